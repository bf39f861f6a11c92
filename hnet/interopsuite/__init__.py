"""``hnet interop run``: a scenario suite against any node, ours or another implementation.

- :mod:`~hnet.interopsuite.model`: outcomes, results, the matrix table, JSON and JUnit XML;
- :mod:`~hnet.interopsuite.links`: our identities, listeners and connections (production
  transports and handshake, used standalone);
- :mod:`~hnet.interopsuite.scenarios`: the scenarios, small async functions;
- :mod:`~hnet.interopsuite.suite`: setting up our side and running the matrix;
- :mod:`~hnet.interopsuite.selftest`: hnet x hnet, every transport and QUIC backend (CI).
"""

from __future__ import annotations

from hnet.interopsuite.model import Outcome, Report, Result, Status
from hnet.interopsuite.scenarios import SCENARIOS, Scenario
from hnet.interopsuite.suite import COLUMNS, Options, SetupError, run_suite

__all__ = [
    "COLUMNS",
    "SCENARIOS",
    "Options",
    "Outcome",
    "Report",
    "Result",
    "Scenario",
    "SetupError",
    "Status",
    "run_suite",
]
