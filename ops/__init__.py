"""Operations as code: SLOs, Prometheus alert rules, Grafana dashboards, and the local Prometheus."""
