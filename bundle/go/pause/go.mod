// The pod sandbox's pause process: our own, built static.
module minikube.local/bundle/pause

go 1.24.0
