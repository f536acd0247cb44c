// The end-to-end tests' workload: a static program run as pods of a real cluster.
module minikube.local/e2e/netcheck

go 1.24.0
