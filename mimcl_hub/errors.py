"""Exceptions raised by mimcl_hub. All are ``ValueError`` subclasses so callers can catch them broadly."""


class ClipError(ValueError):
    """A clip (frames array, video file or dataset row) cannot be used.

    The message always names the clip (its ``clip_id``, file path or row index) and what was wrong.
    """
