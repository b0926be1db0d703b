"""Text shared by the solvers' error messages."""

from __future__ import annotations

from ..core.instance import Instance


def instance_label(instance: Instance) -> str:
    """How an error message names ``instance``.

    Parameters
    ----------
    instance : Instance
        The instance at fault.

    Returns
    -------
    str
        ``instance 'NAME'`` (the name cut to 60 characters, control characters escaped by
        ``repr``), or ``an unnamed instance`` when its name is empty (an instance file without a
        ``"name"`` field; the command line adds the file's path to the message).
    """
    return f"instance {instance.name[:60]!r}" if instance.name else "an unnamed instance"
