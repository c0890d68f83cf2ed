"""HTTP market-data vendors: Binance spot klines and Alpaca Market Data v2 bars.

Both share :mod:`.client` (one pooled httpx transport per provider, a concurrency cap, a
client-side rate limit, bounded retries with backoff, jitter and ``Retry-After``) and
:mod:`.vendor` (options, credentials from environment variables, the fetch window).
"""

from market_pipeline.providers.http import alpaca, binance  # noqa: F401  (registers the kinds)
