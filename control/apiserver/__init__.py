"""The Kubernetes-compatible API server (`kubeling apiserver`), over control.storage.

main.py          the command: data dir, CA and certificates, tokens, kubeconfig
server.py        HTTP routing, verbs, watch streams, Table and Status responses
objects.py       the generic registry: objects in the store, CAS updates, deletion
kinds.py         per-kind defaults, validation, grace periods
subresources.py  binding, eviction, scale
validation.py    field rules, as the real API words its 422 causes
selectors.py     label and field selectors
patch.py         JSON, merge and strategic merge patches
discovery.py     /api, /apis documents; openapi.py: /openapi/v3 and field checks
tables.py        `kubectl get` columns; auth.py: tokens, certificates, policy
resources.py     the served resource types and their storage keys
errors.py        ApiError -> metav1.Status
"""
