#!/usr/bin/env python3
"""Write a synthetic month of quickstart events: gen_month.py <dir> <users>.

<dir>/purchases.csv and <dir>/returns.csv (ds, ts, id, user_id, product_id, purchase_price /
refund_amt): 1 to 8 events per user and table, on random days of 2023-11-01..30. Deterministic
(seeded), so bench/serve.sh and bench/consistency.sh serve the same data.
"""
import datetime
import random
import sys

out, users = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
day0 = datetime.date(2023, 11, 1)
for table, col in (("purchases", "purchase_price"), ("returns", "refund_amt")):
    with open(f"{out}/{table}.csv", "w") as f:
        f.write(f"ds,ts,id,user_id,product_id,{col}\n")
        for u in range(users):
            for k in range(rnd.randint(1, 8)):
                d = day0 + datetime.timedelta(days=rnd.randint(0, 29))
                ts = int(datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.timezone.utc).timestamp() * 1000) + rnd.randint(0, 86399999)
                f.write(f"{d},{ts},{table[0]}{u}-{k},{u},{rnd.randint(1, 99)},{rnd.randint(5, 500)}\n")
