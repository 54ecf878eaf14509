"""`kubeling controller-manager`: the controllers that move workloads toward their
spec, clients of the API server over HTTP only (kubeapi.client), never of its
internals. Each controller decides with pure functions and acts in a thin layer
(STYLE §7), over a keyed work queue: one reconcile per key at a time (STYLE §8).

base.py            informers (watch-fed caches), the keyed work queue, selectors,
                   owner references, the Controller worker loop
replicaset.py      ReplicaSet: pods to create/adopt/release/delete, status counts
deployment.py      Deployment: pod-template-hash, RollingUpdate/Recreate, revisions,
                   history cleanup, status and conditions
serviceaccount.py  a `default` ServiceAccount in every namespace
endpoints.py       Endpoints of each selecting Service: ready/not-ready pod addresses
nodelifecycle.py   silent nodes Unknown and tainted; pods evicted from NoExecute taints
namespace.py       a deleted namespace emptied (discovered kinds), then finalized
garbagecollector.py  ownerReferences: background, foreground and orphan deletion
discovery.py       the served resources, from the discovery documents
manager.py         informers and controllers in one process, behind a Lease
main.py            the command line
"""
