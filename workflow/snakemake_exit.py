"""A workaround for Snakemake's exit, called by the Snakefile's onsuccess and onerror.

It lives beside the Snakefile, not with the stages' shared code in scripts/: it is
about Snakemake's own process, and no stage imports it.
"""


def finish_quickly():
    """Called by the Snakefile once the run is over (onsuccess, onerror): skips two waits
    before Python exits.

    Snakemake's scheduler arms a one-second threading.Timer after each round of job
    selection and Python waits for it at exit, so every run ended up to 1 s after its last
    job: the timers are cancelled (nothing needs rescheduling now). And Python's exit walks
    every live object looking for reference cycles (0.4 s at 20,000 files, more with more
    files): gc.freeze() leaves the objects of the finished run out of that walk.
    """
    import gc
    import threading

    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
    gc.freeze()
