"""Which Channels layer carries storyboard pushes: core Redis layer vs the pub/sub layer.

Measures, for each layer against the same Redis in the same run:
- bursts: N clients in one group, K messages sent back to back; the share delivered;
- paced latency: one message at a time, group_send -> receive, p50/p95.

    .venv/bin/python bench/realtime_layers.py [--clients 50] [--burst 300] [--paced 200] [--redis URL]
    .venv/bin/python bench/realtime_layers.py --smoke      # 2 clients, 5 messages (CI)

--write-docs: also put the table in docs/benchmarks.md (the LAYERS block).
"""

import argparse
import asyncio
import os
import sys
import time

import channels_redis
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from harness import Series, machine, table, write_docs

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
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "").strip() or "redis://127.0.0.1:6379/8")
    parser.add_argument("--smoke", action="store_true", help="2 clients, 5 messages: only checks that it runs")
    parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.burst, args.paced = 2, 5, 5
    rows = []
    for name, layer_cls in LAYERS.items():
        one = asyncio.run(burst(layer_cls, args.redis, 1, args.burst))
        many = asyncio.run(burst(layer_cls, args.redis, args.clients, args.burst))
        latency = Series(name, asyncio.run(paced(layer_cls, args.redis, args.paced)))
        rows.append([name, f"{one:.1%}", f"{many:.1%}", f"{latency.median:.2f}", f"{latency.percentile(0.95):.2f}"])
    headers = [
        "layer",
        f"delivered, 1 client x {args.burst} burst",
        f"delivered, {args.clients} clients x {args.burst} burst",
        "paced p50 ms",
        "paced p95 ms",
    ]
    body = f"{machine(**{'channels-redis': channels_redis.__version__})}\n\n{table(headers, rows)}"
    print(body)
    if args.write_docs:
        write_docs("LAYERS", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
