"""Linux building blocks: namespaces, rootfs, devices, cgroups, capabilities, process, syscalls.

Each module turns part of a config into a list of steps (see ``ocirt.linux.plan``) that can be
described (``--explain``) or carried out; only ``syscalls`` (the binding layer) makes foreign
calls.
"""
