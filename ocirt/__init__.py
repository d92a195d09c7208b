"""ocirt: an OCI container runtime in Python, runc-compatible, built from Linux kernel calls.

Layers (each only calls the ones below it):
  cli        -> argument parsing, logging, exit codes (``ocirt.cli``)
  container  -> the lifecycle: create, start, state, kill, delete, run, list (``ocirt.container``)
  linux      -> building blocks: namespaces, rootfs, cgroups, process, ... (``ocirt.linux``)
  syscalls   -> the one binding layer for foreign calls (``ocirt.linux.syscalls``)
(docs/architecture.md, "Layers", draws them; tests/unit/test_layers.py checks them.)
"""

import time

# The interpreter's start ends here, at the first line of ocirt that runs (``ocirt.timings``).
ENTERED = time.perf_counter()

__version__ = "0.1.0"
# The OCI runtime-spec version this runtime writes in state documents and `ocirt spec`.
OCI_VERSION = "1.3.0"
