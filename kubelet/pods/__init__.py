"""The kubelet's pod sync: desired pods (API watch, static manifests), one worker per
pod driving the CRI, the runtime relist (PLEG), restart back-off, the status manager,
QoS and pod cgroups, and garbage collection of dead containers."""
