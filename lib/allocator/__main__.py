"""``python -m corral.allocator <input-file>``: the built-in allocator as a plugin."""

import sys

from corral.allocator import main

sys.exit(main())
