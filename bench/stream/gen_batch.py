#!/usr/bin/env python3
"""The batch side of the streaming benchmark: returns events for the 20 days up to <batch_ds>.

usage: gen_batch.py <out.csv> <batch_ds> <users>

Columns as the quickstart's data.returns (ds, ts, return_id, user_id, product_id, refund_amt), but
user_id and product_id are strings ("u17", "p3"), the shape the topic's JSON records have, so the
batch upload and the streamed rows key the same way. Events lie in the last 20 days only, so every
one of them is inside the 30-day windows at any time of the next days whatever the window's hops:
a key's 30-day count is then its batch events plus its streamed events (bench/stream/check.py).
"""
import datetime
import random
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    out, batch, users = sys.argv[1], datetime.date.fromisoformat(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(11)
    with open(out, "w") as f:
        f.write("ds,ts,return_id,user_id,product_id,refund_amt\n")
        for u in range(users):
            for k in range(rnd.randint(0, 3)):
                d = batch - datetime.timedelta(days=rnd.randint(0, 19))
                midnight = datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.timezone.utc)
                ts = int(midnight.timestamp() * 1000) + rnd.randint(0, 86_399_999)
                f.write(f"{d},{ts},b{u}-{k},u{u},p{rnd.randint(1, 99)},{rnd.randint(5, 500)}\n")


if __name__ == "__main__":
    main()
