"""The `signal` API without its enum wrappers: `import signal` costs an `enum`
import (about 3 ms here) on every runtime call; `_signal` is the same functions and
integer constants underneath. Use as `from runtime.signals import signal`."""

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

__all__ = ["signal"]
