"""The `ray` tests start Ray clusters: only where no packet can leave the machine.

Ray's defaults reach outside addresses even with usage stats off: the head asks the cloud
metadata address which cloud it runs on (unless a cluster config sits in its home folder), a
"usage stats disabled" ping goes to usage-stats.ray.io, and 127.0.0.1 is rewritten to the address
of the route to a public resolver. The variables below turn that off and must be set before Ray is
imported; the cluster fixture also refuses to start unless the only network interface is
loopback (run them with `unshare -n`, as `.ci/run`'s ray stage does).
"""

from __future__ import annotations

import os

LOOPBACK_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
for _name, _value in LOOPBACK_ENV.items():
    os.environ.setdefault(_name, _value)
