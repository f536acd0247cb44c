################################################################################
#
# minikube-agent
#
################################################################################

# Built from the Cargo workspace that holds this BR2_EXTERNAL tree (its parent directory).
# Keep the version equal to [workspace.package] version in Cargo.toml (checked by the lint).
MINIKUBE_AGENT_VERSION = 0.1.0
MINIKUBE_AGENT_SITE = $(BR2_EXTERNAL_MINIKUBE_RS_PATH)/..
MINIKUBE_AGENT_SITE_METHOD = local
MINIKUBE_AGENT_LICENSE = Apache-2.0

# The workspace root also holds cargo's target/ and the buildroot output directory (out/):
# copying them into the build directory would be slow, and out/ would copy itself.
MINIKUBE_AGENT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude=/target --exclude=/out --exclude=.git

# Only the agent: one package, one binary.
MINIKUBE_AGENT_CARGO_BUILD_OPTS = --package agent --bin minikube-agent

# A local site is copied, not downloaded, so the cargo download step that vendors the
# dependencies for the --offline build never runs. Vendor them here, from Cargo.lock
# (cargo checks every crate against the lock file's checksum), once host-rustc exists.
define MINIKUBE_AGENT_CARGO_VENDOR
	mkdir -p $(@D)/.cargo
	cd $(@D) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo vendor --locked --versioned-dirs VENDOR >> $(@D)/.cargo/config.toml
endef
MINIKUBE_AGENT_PRE_BUILD_HOOKS += MINIKUBE_AGENT_CARGO_VENDOR

# `cargo install --path ./` (the cargo-package default) needs a package manifest, and the
# workspace root is a virtual one: install the one binary ourselves.
define MINIKUBE_AGENT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/minikube-agent \
		$(TARGET_DIR)/usr/bin/minikube-agent
endef

$(eval $(cargo-package))
