import sys

from mbert_retrieval.cli.app import main

sys.exit(main())
