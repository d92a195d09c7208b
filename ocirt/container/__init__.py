"""The container lifecycle, one module per verb, usable as a library without the CLI:
``create``, ``start``, ``kill``, ``delete``, ``run``; ``state`` holds the status machine and
the state directory, ``plan`` turns config.json into steps, ``init`` and ``sync`` are the
processes that become the container and the protocol they speak."""
