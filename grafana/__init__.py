"""Grafana dashboards, alert rules and provisioning for palliwatch, as code.

`grafana.orgs` gives every audience (schemas.audiences) a Grafana organisation with one
PostgreSQL datasource logging in as its role; `grafana.dashboards` and `grafana.alerts` build
plain Grafana JSON models per organisation with small typed builder functions; `grafana.build`
writes them to grafana/dashboards/<org>/, grafana/provisioning/ and grafana/bootstrap/
(committed, checked for drift by the tests); `grafana.push` applies the same artefacts to a
running Grafana through its HTTP API with grafana-client.
"""
