"""What a run tells the user's shell: durations and the one line per epoch.

Torch-free: :func:`format_duration` also serves a command line's whole-job estimate.
"""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: ``"0.042 s"``, ``"6 s"``, ``"4 min 42 s"``,
    ``"2 h 05 min"``, ``"3 d 4 h"`` (two units at most; two significant digits below a
    second, whole seconds above).

    Raises:
        ValueError: when ``seconds`` is negative or not finite.
    """
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a duration must be a finite number >= 0 seconds, got {seconds!r}")
    if seconds < 0.95:  # from here on whole seconds say enough
        return f"{seconds:.2g} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def epoch_line(epoch: int, epochs: int, loss: float, monitor: str, score: float,
               best: bool, seconds_per_epoch: float, epochs_left: int,
               early_stop: int | None = None) -> str:
    """The line a run prints after an epoch, with how long it may still take, e.g.
    ``epoch 3/50: loss 0.0783, val map 0.7277 (best) · 6 s/epoch, at most 4 min 42 s
    left``.

    Args:
        epoch: The epoch just run (1-based).
        epochs: The run's maximum number of epochs.
        loss: Its mean training loss.
        monitor: The validation metric (``TrainConfig.monitor``).
        score: Its value, averaged over the systems.
        best: Whether the score is the run's best so far.
        seconds_per_epoch: Mean wall time of an epoch (training and validation).
        epochs_left: Epochs the run may still do; the time left is an upper bound,
            because early stopping may end the run sooner.
        early_stop: The patience, when early stopping ends the run after this epoch.
    """
    line = (f"epoch {epoch}/{epochs}: loss {loss:.4f}, val {monitor} {score:.4f}"
            f"{' (best)' if best else ''} · {format_duration(seconds_per_epoch)}/epoch")
    if early_stop is not None:
        return f"{line}, early stop (no better val {monitor} in {early_stop} epochs)"
    if epochs_left > 0:
        return f"{line}, at most {format_duration(seconds_per_epoch * epochs_left)} left"
    return line


__all__ = ["epoch_line", "format_duration"]
