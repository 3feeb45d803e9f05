#!/usr/bin/python3
"""json_origin.py -- the origin of bench/json_bench.sh (aiohttp).

    json_origin.py [--port N]   serve on 127.0.0.1:N (0, the default: any
                                free port); prints "PORT <n>" once listening.
                                POST /echo: json.loads of the body, answered
                                with json.dumps of it (application/json);
                                400 when the body is not JSON.
    json_origin.py --body       print the benchmark's request body: a
                                deterministic JSON document of about 31 KB
                                (a page of customer records with addresses,
                                tags and orders).

Run it with /usr/bin/python3 (the interpreter with aiohttp).
"""

import argparse
import json
import random
import socket
import sys

BODY_SIZE = 31 * 1000

FIRST = ["Ada", "Björn", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gustavo",
         "Hana", "Ivan", "Jamal", "Kateřina", "Liam", "Mei", "Nnamdi",
         "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tomás"]
LAST = ["Andersen", "Brown", "Castillo", "Dubois", "Eriksen", "Fischer",
        "García", "Horvat", "Ivanova", "Jensen", "Kowalski", "Lambert",
        "Moreau", "Nakamura", "O'Brien", "Petrov", "Rossi", "Schmidt"]
CITIES = [("Lisbon", "PT"), ("Kraków", "PL"), ("Lyon", "FR"),
          ("Osaka", "JP"), ("Austin", "US"), ("Tartu", "EE"),
          ("Porto Alegre", "BR"), ("Gent", "BE")]
STREETS = ["Main St", "Rua Augusta", "Długa", "Rue de la République",
           "Elm Avenue", "Kalevi", "Station Road"]
TAGS = ["vip", "newsletter", "wholesale", "beta", "churn-risk", "b2b",
        "referral", "eu", "apac", "trial"]
STATUS = ["pending", "paid", "shipped", "delivered", "refunded"]


def record(rnd, i):
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    city, country = rnd.choice(CITIES)
    orders = []
    for k in range(rnd.randint(0, 3)):
        items = [{"sku": "SKU-%05d" % rnd.randint(1, 99999),
                  "qty": rnd.randint(1, 5),
                  "unit_price": round(rnd.uniform(0.5, 250.0), 2)}
                 for _ in range(rnd.randint(1, 4))]
        orders.append({
            "id": "ord_%08x" % rnd.getrandbits(32),
            "created": "2026-%02d-%02dT%02d:%02d:%02dZ" % (
                rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23),
                rnd.randint(0, 59), rnd.randint(0, 59)),
            "status": rnd.choice(STATUS),
            "items": items,
            "total": round(sum(x["qty"] * x["unit_price"] for x in items), 2),
            "currency": "EUR",
            "gift": rnd.random() < 0.1,
        })
    return {
        "id": 100000 + i,
        "uuid": "%032x" % rnd.getrandbits(128),
        "name": {"first": first, "last": last},
        "email": "%s.%s%d@example.com" % (first.lower(), last.lower(), i),
        "age": rnd.randint(18, 90),
        "active": rnd.random() < 0.8,
        "balance": round(rnd.uniform(-500, 10000), 2),
        "score": rnd.random(),
        "tags": rnd.sample(TAGS, rnd.randint(0, 4)),
        "address": {
            "street": "%d %s" % (rnd.randint(1, 300), rnd.choice(STREETS)),
            "city": city,
            "country": country,
            "postcode": "%05d" % rnd.randint(1000, 99999),
            "geo": {"lat": round(rnd.uniform(-60, 70), 6),
                    "lon": round(rnd.uniform(-180, 180), 6)},
        },
        "manager": None if rnd.random() < 0.5 else 100000 + rnd.randint(0, i),
        "orders": orders,
    }


def body():
    """The request body: records are added until it reaches BODY_SIZE."""
    rnd = random.Random(8)
    doc = {"page": 1, "per_page": 0, "total": 0, "next": None,
           "generated": "2026-11-21T00:00:00Z", "items": []}
    while len(json.dumps(doc)) < BODY_SIZE:
        doc["items"].append(record(rnd, len(doc["items"])))
        doc["per_page"] = doc["total"] = len(doc["items"])
    return json.dumps(doc)


def serve(port):
    from aiohttp import web

    async def echo(request):
        try:
            data = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="not JSON\n")
        return web.Response(body=json.dumps(data).encode(),
                            content_type="application/json")

    app = web.Application(client_max_size=16 << 20)
    app.router.add_post("/echo", echo)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    print("PORT %d" % sock.getsockname()[1], flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--body", action="store_true",
                    help="print the request body and exit")
    a = ap.parse_args()
    if a.body:
        sys.stdout.write(body())
        return
    serve(a.port)


if __name__ == "__main__":
    main()
