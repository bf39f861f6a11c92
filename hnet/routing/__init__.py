"""Routed (indirect) connections, PROTOCOL-FACTS §4.

- :mod:`hnet.routing.request`: build, sign and check RoutingRequests (pure);
- :mod:`hnet.routing.passthrough`: the router's byte pipes and their bounds;
- :mod:`hnet.routing.router`: the router role (pair, dial a direct target, or ask an
  indirect one with a ConnectionRequest);
- :mod:`hnet.routing.dial`: connections through a router, from the source (Noise initiator)
  and from the indirect target (Noise responder);
- :mod:`hnet.routing.indirect`: the indirect node role (sessions to its routers, answers to
  ConnectionRequests).

QUIC is not routed: routed connections are TCP or WebSocket, as in the reference.
"""
