# Every package of this tree brings its own .mk file.
include $(sort $(wildcard $(BR2_EXTERNAL_MINIKUBE_RS_PATH)/package/*/*.mk))
