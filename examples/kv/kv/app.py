"""kv: a small key-value store, a Hyperware process written in Python.

Built into a component of world ``process-v1`` (``wit/``) by componentize-py
(``tools/build_examples.py``); the module ``wit_world`` is the bindings componentize-py
generates from ``wit/`` at build time.

Requests carry JSON bodies; each is answered with a JSON response:

- ``{"Set": [key, value]}`` -> ``{"Ok": null}`` (value: any JSON value)
- ``{"Get": key}`` -> ``{"Value": value}`` (``null`` when the key is not set)
- ``{"Delete": key}`` -> ``{"Ok": null}``
- ``{"Keys": null}`` -> ``{"Keys": [key, ...]}`` (sorted)
- anything else -> ``{"Err": "why"}``

The store is kept with ``set-state`` after every change and read back with ``get-state`` at
start, so it survives a restart of the process (and of the node).
"""

from __future__ import annotations

import json
from typing import Any

import wit_world
from componentize_py_types import Err
from wit_world.imports import standard as hw


def load() -> dict[str, Any]:
    raw = hw.get_state()
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def save(store: dict[str, Any]) -> None:
    hw.set_state(json.dumps(store, sort_keys=True).encode())


def handle(store: dict[str, Any], body: bytes) -> Any:
    """The answer to one request body; changes ``store`` (and saves it) for Set and Delete."""
    try:
        req = json.loads(body)
    except ValueError:
        return {"Err": "body is not JSON"}
    if not isinstance(req, dict) or len(req) != 1:
        return {"Err": "expected an object with one key: Set, Get, Delete or Keys"}
    ((op, arg),) = req.items()
    if op == "Set":
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
            return {"Err": "Set takes [key, value] with a string key"}
        store[arg[0]] = arg[1]
        save(store)
        return {"Ok": None}
    if op == "Get":
        if not isinstance(arg, str):
            return {"Err": "Get takes a string key"}
        return {"Value": store.get(arg)}
    if op == "Delete":
        if not isinstance(arg, str):
            return {"Err": "Delete takes a string key"}
        if arg in store:
            del store[arg]
            save(store)
        return {"Ok": None}
    if op == "Keys":
        return {"Keys": sorted(store)}
    return {"Err": f"unknown request {op!r}"}


def reply(answer: Any) -> None:
    body = json.dumps(answer).encode()
    hw.send_response(hw.Response(False, body, None, []), None)


class WitWorld(wit_world.WitWorld):
    def init(self, our: str) -> None:
        store = load()
        hw.print_to_terminal(1, f"kv: {our} up with {len(store)} keys")
        while True:
            try:
                _source, message = hw.receive()
            except Err:
                continue  # a send-error: kv sends no requests, so nothing to do
            if isinstance(message, hw.Message_Request):
                reply(handle(store, message.value.body))
