"""The checkout body's validation alone: DRF's serializer against checkout_input_validate (timeit).

    python -m bench.checkout_validation [--rounds 7]

In-process, no database: for a body of 1, 3 and 100 lines, the two are timed in alternating
rounds (each round times both, in turn), and each's median and best round are printed with the
ratio of the medians. The serializer is CheckoutListCreateApi.InputSerializer, which publishes
the body in the OpenAPI schema and which the API used to validate with.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import timeit
from collections.abc import Callable
from typing import Any

# Calls per round, by body: about a tenth of a second each on a quiet box.
BODIES = {"1 line": 1, "3 lines": 3, "100 lines": 100}
CALLS = {"1 line": 1000, "3 lines": 1000, "100 lines": 30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")  # settings need a SECRET_KEY otherwise; nothing here uses it
    import django

    django.setup()
    from checkout.apis import CheckoutListCreateApi
    from checkout.checkout_input import checkout_input_validate
    from checkout.tests.factories import VALID_CHECKOUT

    def serializer_validate(body: dict[str, Any]) -> Any:
        serializer = CheckoutListCreateApi.InputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    contenders: dict[str, Callable[[dict[str, Any]], Any]] = {
        "DRF serializer": serializer_validate,
        "checkout_input_validate": checkout_input_validate,
    }
    line = VALID_CHECKOUT["lines"][0]
    for name, count in BODIES.items():
        body = copy.deepcopy(VALID_CHECKOUT)
        body["lines"] = [{**line, "sku": f"SKU-{index}"} for index in range(count)]
        rounds: dict[str, list[float]] = {label: [] for label in contenders}
        for _ in range(args.rounds):
            for label, validate in contenders.items():
                seconds = timeit.timeit(lambda validate=validate, body=body: validate(body), number=CALLS[name])
                rounds[label].append(seconds / CALLS[name] * 1e6)
        medians = {label: statistics.median(times) for label, times in rounds.items()}
        shown = "  ".join(f"{label} {medians[label]:7.1f} us (best {min(rounds[label]):7.1f})" for label in contenders)
        ratio = medians["checkout_input_validate"] / medians["DRF serializer"]
        print(f"{name:9s}  {shown}  new/old {ratio:.3f}")


if __name__ == "__main__":
    main()
