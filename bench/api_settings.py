"""Settings of the API benchmark's server (``bench.api``): the product's settings, production mode
included, with the bench-only URLconf ``bench.api_site`` (the product's URLs plus the floor view)."""

from pipeline.settings import *  # noqa: F403

ROOT_URLCONF = "bench.api_site"
