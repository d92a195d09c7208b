"""seccomp: config.json ``linux.seccomp`` checked, compiled to BPF, cached, and loaded.

One module per concern:

* ``rules``: the profile as data (action, architecture, operator and flag values; one rule,
  checked with its JSON path). No foreign calls.
* ``compile``: the rules through libseccomp into BPF (``ocirt.linux.syscalls.seccomp`` binds
  libseccomp and seccomp(2); pyseccomp is imported only on a cache miss: ~20 ms).
* ``bpf_cache``: compiled programs kept under ``<cache_dir>/seccomp/<key>.bpf``.
* ``filter``: ``SeccompFilter``, a profile from its checks through ``prepare`` (parent) to
  ``load`` (the container's init, just before execve).
* ``support``: ``ocirt features``'s part.

The default profile ``ocirt spec`` writes is data of the config layer
(``ocirt.config.seccomp_profile``); this package compiles whatever profile a config holds.

The names users need are re-exported here.
"""

from __future__ import annotations

from ocirt.linux.seccomp.filter import SeccompFilter
from ocirt.linux.seccomp.support import features

__all__ = ["SeccompFilter", "features"]
