"""Which Channels layer carries storyboard pushes: core Redis layer vs the pub/sub layer.

Measures, for each layer against the same Redis in the same run:
- bursts: N clients in one group, K messages sent back to back; the share delivered;
- paced latency: one message at a time, group_send -> receive, p50/p95.

    .venv/bin/python bench/realtime_layers.py [--clients 50] [--burst 300] [--paced 200] [--redis URL]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

LAYERS = {"core (capacity 100)": RedisChannelLayer, "pubsub": RedisPubSubChannelLayer}


async def burst(layer_cls, url: str, clients: int, count: int) -> float:
    layer = layer_cls(hosts=[url], prefix=f"bench{os.getpid()}")
    channels = [await layer.new_channel() for _ in range(clients)]
    for channel in channels:
        await layer.group_add("bench", channel)
    await asyncio.sleep(0.2)  # let pub/sub subscriptions settle before measuring
    for i in range(count):
        await layer.group_send("bench", {"type": "relay", "n": i})
    received = 0

    async def drain(channel):
        nonlocal received
        while True:
            try:
                await asyncio.wait_for(layer.receive(channel), timeout=1.0)
                received += 1
            except TimeoutError:
                return

    await asyncio.gather(*(drain(c) for c in channels))
    for channel in channels:
        await layer.group_discard("bench", channel)
    if hasattr(layer, "flush"):
        await layer.flush()
    return received / (clients * count)


async def paced(layer_cls, url: str, count: int) -> list[float]:
    layer = layer_cls(hosts=[url], prefix=f"benchp{os.getpid()}")
    channel = await layer.new_channel()
    await layer.group_add("paced", channel)
    await asyncio.sleep(0.2)
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        await layer.group_send("paced", {"type": "relay", "n": i})
        await asyncio.wait_for(layer.receive(channel), timeout=5)
        latencies.append((time.perf_counter() - started) * 1000)
    await layer.group_discard("paced", channel)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--paced", type=int, default=200)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    print(
        f"| layer | delivered, 1 client x {args.burst} burst | delivered, {args.clients} clients x {args.burst} "
        f"burst | paced p50 ms | paced p95 ms |"
    )
    print("|---|---|---|---|---|")
    for name, layer_cls in LAYERS.items():
        one = asyncio.run(burst(layer_cls, args.redis, 1, args.burst))
        many = asyncio.run(burst(layer_cls, args.redis, args.clients, args.burst))
        lat = sorted(asyncio.run(paced(layer_cls, args.redis, args.paced)))
        p95 = lat[int(0.95 * (len(lat) - 1))]
        print(f"| {name} | {one:.1%} | {many:.1%} | {statistics.median(lat):.2f} | {p95:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
