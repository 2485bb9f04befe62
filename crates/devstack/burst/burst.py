"""N authenticated webhooks of almost 1 MiB (default 400), all at once and slowly (64 KiB
every 0.3 s); prints the answers by status and the ingress's RSS before, at peak, and idle a
minute later, as JSON. Used by crates/devstack/burst-rss.sh.

    burst.py HTTP_PORT INGRESS_PID SECRET [N]
"""
import asyncio, json, sys, time, collections

HOST, PORT, PID, SECRET = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 400
SIZE, CHUNK, PAUSE = 1024 * 1024 - 1024, 64 * 1024, 0.3

def rss():
    status = open(f"/proc/{PID}/status").read()
    get = lambda k: int(next(l for l in status.splitlines() if l.startswith(k)).split()[1]) // 1024
    return get("VmRSS:"), get("VmHWM:")

def body(i):
    event = {"eventType": "CallStatusChanged", "timestamp": "2026-12-06T09:00:00.000Z",
             "eventId": f"burst-{time.time_ns()}-{i}", "callId": f"c{i}", "status": "started"}
    text = json.dumps(event)
    return (text + " " * (SIZE - len(text))).encode()

async def one(i, statuses):
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
        data = body(i)
        writer.write((f"POST /webhooks/voicehub HTTP/1.1\r\nhost: x\r\nx-webhook-secret: {SECRET}\r\n"
                      f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n").encode())
        for at in range(0, len(data), CHUNK):
            writer.write(data[at:at + CHUNK])
            await writer.drain()
            await asyncio.sleep(PAUSE)
        line = await asyncio.wait_for(reader.readline(), 30)
        statuses[line.split(b" ")[1].decode() if line else "none"] += 1
        writer.close()
    except Exception as e:
        statuses[type(e).__name__] += 1

async def main():
    before = rss()
    statuses = collections.Counter()
    started = time.time()
    peak = 0
    tasks = [asyncio.create_task(one(i, statuses)) for i in range(N)]
    while not all(t.done() for t in tasks):
        peak = max(peak, rss()[0])
        await asyncio.sleep(0.1)
    took = time.time() - started
    await asyncio.sleep(60)
    after = rss()
    print(json.dumps({"sent": N, "answers": statuses, "seconds": round(took, 1),
                      "rss_before_mb": before[0], "rss_peak_mb": max(peak, after[1]), "rss_idle_after_60s_mb": after[0]}))

asyncio.run(main())
