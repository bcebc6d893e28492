"""Fetch-only throughput of the download clients on loopback (issue 5 §1: "measure, and keep
whichever is faster at equal correctness").

N distinct URLs (the coco-mini photos behind ``?i=N``) are served by the benchmark's file server
in its own process; each client fetches every body into memory and drops it (no decoding), with
64 concurrent requests and a 10 s deadline, in this one process, in rotating order:

* ``urllib_threads`` (baseline): the former client, a 64-thread pool around
  ``urllib.request.urlopen`` reading each body in 64 KiB pieces (the code the download stage
  had before ``curate.net``);
* ``httpx_async``: ``httpx.AsyncClient`` (64 connections, keep-alive) with a total deadline per
  request (``asyncio.timeout``), no policy: the other candidate the issue names;
* ``curate_fetcher``: :class:`curate.net.fetch.Fetcher` as the stage uses it: aiohttp, the
  address policy on every hop (``allow_private: 127.0.0.0/8``), the byte budget, the deadline.

Figures: images/s (best and median of ``--repeats`` rounds), and process CPU seconds per 1,000
images (all threads): on 2 cores the client's CPU is taken from decoding. Target: curate_fetcher
images/s >= urllib_threads images/s, every URL fetched by every client.

    .venv/bin/python benchmarks/fetch.py [--images DIR] [--n 2000] [--repeats 5] [--httpx-rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

THREADS = 64
TIMEOUT = 10.0


def _urllib_threads(urls: list[str]) -> int:
    def one(url: str) -> int:
        request = urllib.request.Request(url, headers={"User-Agent": "curate-bench"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            size = 0
            while chunk := response.read1(1 << 16):
                size += len(chunk)
            return size

    with ThreadPoolExecutor(THREADS) as pool:
        return sum(1 for size in pool.map(one, urls) if size > 0)


def _httpx_async(urls: list[str]) -> int:
    import httpx

    async def run() -> int:
        limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
        slots = asyncio.Semaphore(THREADS)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

            async def one(url: str) -> int:
                try:
                    async with slots, asyncio.timeout(TIMEOUT):
                        response = await client.get(url)
                        return len(response.content) if response.status_code == 200 else 0
                except (TimeoutError, httpx.HTTPError):  # counted as not fetched
                    return 0

            return sum(1 for size in await asyncio.gather(*map(one, urls)) if size > 0)

    return asyncio.run(run())


def _curate_fetcher(urls: list[str]) -> int:
    from curate.net.fetch import Fetcher, FetchSettings
    from curate.net.policy import NetPolicy

    fetcher = Fetcher(FetchSettings(timeout=TIMEOUT, threads=THREADS), NetPolicy.build(["http", "https"], ["127.0.0.0/8"], None))
    try:
        return sum(1 for _, fetched in fetcher.fetch(urls) if fetched.body)
    finally:
        fetcher.close()


CLIENTS = {"urllib_threads": _urllib_threads, "httpx_async": _httpx_async, "curate_fetcher": _curate_fetcher}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=C.COCO_IMAGES, help="directory of .jpg photos to serve")
    parser.add_argument("--n", type=int, default=2000, help="distinct URLs per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (rotating order); best and median are reported")
    parser.add_argument("--httpx-rounds", type=int, default=1, help="rounds httpx takes part in (it is ~10x slower)")
    args = parser.parse_args()
    C.claim_stdout()
    C.require(args.images, "coco-mini images")
    names = sorted(p.name for p in args.images.glob("*.jpg"))
    env = C.machine()
    server, base = C.start_file_server(args.images)
    runs: dict[str, list[dict]] = {name: [] for name in CLIENTS}
    try:
        for round_ in range(args.repeats):
            order = list(CLIENTS)[round_ % len(CLIENTS):] + list(CLIENTS)[: round_ % len(CLIENTS)]
            for name in order:
                if name == "httpx_async" and round_ >= args.httpx_rounds:
                    continue
                urls = [f"{base}{names[i % len(names)]}?r={round_}&c={name}&i={i}" for i in range(args.n)]
                cpu0, start = time.process_time(), time.perf_counter()
                ok = CLIENTS[name](urls)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
                runs[name].append({"images_per_s": round(ok / wall, 1), "ok": ok, "wall_s": round(wall, 3),
                                   "cpu_s_per_1000": round(1000 * cpu / args.n, 3)})
                C.log(name, runs[name][-1])
    finally:
        C.stop(server)
    best = {name: max(r, key=lambda x: x["images_per_s"]) for name, r in runs.items()}
    median = {name: statistics.median(x["images_per_s"] for x in r) for name, r in runs.items()}
    baseline = best["urllib_threads"]["images_per_s"]
    result = {
        "benchmark": "fetch",
        "urls": args.n,
        "threads": THREADS,
        "repeats": args.repeats,
        "best": best,
        "median_images_per_s": median,
        "median_cpu_s_per_1000": {name: statistics.median(x["cpu_s_per_1000"] for x in r) for name, r in runs.items()},
        "all_runs": runs,
        "ratio_curate_fetcher_vs_urllib_threads": round(best["curate_fetcher"]["images_per_s"] / baseline, 2),
        "ratio_median_curate_fetcher_vs_urllib_threads": round(median["curate_fetcher"] / median["urllib_threads"], 2),
        "ratio_httpx_async_vs_urllib_threads": round(best["httpx_async"]["images_per_s"] / baseline, 2),
        "target": "curate_fetcher images/s >= urllib_threads images/s, all URLs fetched",
        "target_met": best["curate_fetcher"]["images_per_s"] >= baseline and all(b["ok"] == args.n for b in best.values()),
        "machine": env,
    }
    C.emit(result)


if __name__ == "__main__":
    main()
