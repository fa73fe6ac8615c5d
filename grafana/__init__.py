"""Grafana dashboards, alert rules and provisioning for palliwatch, as code.

`grafana.orgs` gives every audience (schemas.audiences) a Grafana organisation with one
PostgreSQL datasource logging in as its role; `grafana.dashboards` builds the dashboards per
organisation with grafana-foundation-sdk's typed builders (`grafana.panels`: palliwatch's pieces
on top of them) and `grafana.alerts` the alert rules as Grafana's JSON; `grafana.build`
writes them to grafana/dashboards/<org>/, grafana/provisioning/ and grafana/bootstrap/
(committed, checked for drift by the tests); `grafana.push` applies the same artefacts to a
running Grafana through its HTTP API with grafana-client.
"""
