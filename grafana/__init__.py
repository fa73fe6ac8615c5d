"""Grafana dashboards, alert rules and provisioning for palliwatch, as code.

`grafana.dashboards` and `grafana.alerts` build plain Grafana JSON models with small typed
builder functions; `grafana.build` writes them to grafana/dashboards/ and
grafana/provisioning/alerting/ (committed, checked for drift by the tests); `grafana.push`
applies the same artefacts to a running Grafana through its HTTP API with grafana-client.
"""
