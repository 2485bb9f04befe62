"""Hostile but legal load on the ingress, reported as one JSON line (used by
deploy/ci/memory-limit.sh and scripts/memory/burst-rss.sh).

    hostile-load.py flood PORT PID CONNECTIONS HOLD_S
        CONNECTIONS opened at once that send nothing: each tries HOLD_S seconds to connect, then
        waits up to HOLD_S seconds for the server; reports how each ended (answered or closed
        by the server, still open, never connected).
    hostile-load.py burst PORT PID SECRET WEBHOOKS IDS_FILE [IDLE_S [PAUSE_S]]
        WEBHOOKS authenticated CallStatusChanged webhooks of almost 1 MiB (the body limit), all
        at once and slowly (64 KiB every PAUSE_S, default 0.3 s); reports the answers by status
        and writes the eventId of every one answered 2xx to IDS_FILE, one per line.

Both report the RSS of process PID, read from /proc (so it may run in a container): before,
at peak (sampled every 100 ms), the kernel's high-water mark, and IDLE_S seconds (default 60)
after the load.
"""
import asyncio, collections, json, resource, sys, time

HOST = "127.0.0.1"
BODY_BYTES, CHUNK_BYTES = 1024 * 1024 - 1024, 64 * 1024
ANSWER_TIMEOUT_S = 120


def rss_mib(pid):
    """VmRSS and VmHWM in MiB; zeros once the process has gone (killed, say)."""
    try:
        lines = open(f"/proc/{pid}/status").read().splitlines()
    except FileNotFoundError:
        return {"VmRSS": 0, "VmHWM": 0}
    fields = dict(line.split(":", 1) for line in lines)
    return {k: int(fields[k].split()[0]) // 1024 if k in fields else 0 for k in ("VmRSS", "VmHWM")}


class Sampler:
    """The process's RSS every 100 ms while the load runs."""

    def __init__(self, pid):
        self.pid, self.peak, self.before = pid, 0, rss_mib(pid)["VmRSS"]

    async def run(self, load):
        task = asyncio.ensure_future(load)
        while not task.done():
            self.peak = max(self.peak, rss_mib(self.pid)["VmRSS"])
            await asyncio.sleep(0.1)
        return task.result()

    async def report(self, idle_s, **figures):
        now = rss_mib(self.pid)
        self.peak = max(self.peak, now["VmRSS"])
        if idle_s:
            await asyncio.sleep(idle_s)
        return {**figures, "rss_before_mib": self.before, "rss_peak_mib": self.peak,
                "rss_high_water_mib": rss_mib(self.pid)["VmHWM"],
                f"rss_idle_after_{idle_s}s_mib" if idle_s else "rss_after_mib": rss_mib(self.pid)["VmRSS"]}


def allow_sockets(count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 64:
        sys.exit(f"hostile-load: {count} sockets need a file limit above {count}, have {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def connect(port, timeout_s, outcomes):
    """A connection to the ingress, or None (counted in `outcomes`) if none within timeout_s."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout_s)
    except (OSError, asyncio.TimeoutError) as e:
        outcomes[f"never connected ({type(e).__name__})"] += 1
        return None


async def idle_connection(port, hold_s, ends):
    if not (connection := await connect(port, hold_s, ends)):
        return
    reader, writer = connection
    try:
        first = await asyncio.wait_for(reader.readline(), hold_s)
        ends[f"answered {first.split()[1].decode()}" if first else "closed by the server"] += 1
    except asyncio.TimeoutError:
        ends["still open"] += 1
    except OSError as e:
        ends[f"reset ({type(e).__name__})"] += 1
    writer.close()


async def flood(port, pid, connections, hold_s):
    allow_sockets(connections)
    sampler, ends = Sampler(pid), collections.Counter()
    started = time.monotonic()
    await sampler.run(asyncio.gather(*(idle_connection(port, hold_s, ends) for _ in range(connections))))
    return await sampler.report(0, connections=connections, ends=ends,
                                seconds=round(time.monotonic() - started, 1))


def webhook(event_id, i):
    event = {"eventType": "CallStatusChanged", "timestamp": "2026-12-06T09:00:00.000Z",
             "eventId": event_id, "callId": f"burst-call-{i}", "status": "started"}
    text = json.dumps(event)
    return (text + " " * (BODY_BYTES - len(text))).encode()


async def slow_webhook(port, secret, event_id, i, pause_s, answers, accepted):
    data = webhook(event_id, i)
    head = (f"POST /webhooks/voicehub HTTP/1.1\r\nhost: ingress\r\nx-webhook-secret: {secret}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n").encode()
    if not (connection := await connect(port, ANSWER_TIMEOUT_S, answers)):
        return
    reader, writer = connection
    try:
        writer.write(head)
        for at in range(0, len(data), CHUNK_BYTES):
            writer.write(data[at:at + CHUNK_BYTES])
            await writer.drain()
            await asyncio.sleep(pause_s)
    except OSError:
        pass  # answered before the whole body was sent (503, 408): the status line says which
    try:
        line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
        status = line.split()[1].decode() if line else "closed without an answer"
    except (OSError, asyncio.TimeoutError) as e:
        status = f"no answer ({type(e).__name__})"
    answers[status] += 1
    if status.startswith("2"):
        accepted.append(event_id)
    writer.close()


async def burst(port, pid, secret, webhooks, ids_file, idle_s, pause_s):
    allow_sockets(webhooks)
    sampler, answers, accepted = Sampler(pid), collections.Counter(), []
    run = f"burst-{time.time_ns()}"
    started = time.monotonic()
    await sampler.run(asyncio.gather(*(
        slow_webhook(port, secret, f"{run}-{i}", i, pause_s, answers, accepted) for i in range(webhooks))))
    took = round(time.monotonic() - started, 1)
    with open(ids_file, "w") as f:
        f.writelines(f"{event_id}\n" for event_id in accepted)
    return await sampler.report(idle_s, webhooks=webhooks, answers=answers, seconds=took)


def main(args):
    if args[:1] == ["flood"] and len(args) == 5:
        port, pid, connections, hold_s = map(int, args[1:])
        return flood(port, pid, connections, hold_s)
    if args[:1] == ["burst"] and 6 <= len(args) <= 8:
        port, pid, secret, webhooks, ids_file = int(args[1]), int(args[2]), args[3], int(args[4]), args[5]
        idle_s = int(args[6]) if len(args) > 6 else 60
        pause_s = float(args[7]) if len(args) > 7 else 0.3
        return burst(port, pid, secret, webhooks, ids_file, idle_s, pause_s)
    sys.exit(__doc__)


print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
