"""The swaprace test box: a Debian guest under QEMU where the live (kprobe) side of swaprace is exercised.

One module per concern:

* :mod:`swaprace.vm.image`  -- build and cache the guest image (debootstrap rootfs, ext4 disk, kernel, initrd)
* :mod:`swaprace.vm.accel`  -- KVM or TCG, decided by a short trial boot whose verdict is cached
* :mod:`swaprace.vm.runner` -- boot a throw-away overlay of the image, run one command, stream its output,
  return its exit status; time limit, panic detection, no orphaned QEMU

The host is changed in one place only: the cache directory (``~/.cache/swaprace/vm``, see :func:`cache_dir`).
"""

from swaprace.vm.image import KERNELS, BuiltImage, cache_dir, ensure_image
from swaprace.vm.runner import GuestOptions, GuestResult, GuestStreams, run_in_guest

__all__ = ["KERNELS", "BuiltImage", "GuestOptions", "GuestResult", "GuestStreams", "cache_dir", "ensure_image",
           "run_in_guest"]
