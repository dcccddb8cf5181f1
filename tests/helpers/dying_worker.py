"""A training worker whose rank 1 dies in its first step (`os._exit`): the fault the launcher must report.

Run by tests/integration/test_distributed.py through `cscnn.training.distributed.launch(..., module=...)`.
"""

import os
import sys

from cscnn.training import launch, train


def main() -> int:
    original = train.train_step

    def dying_step(*args, **kwargs):
        if int(os.environ.get("RANK", "0")) == 1:
            os._exit(7)
        return original(*args, **kwargs)

    train.train_step = dying_step
    return launch.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
