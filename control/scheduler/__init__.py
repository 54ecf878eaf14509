"""`kubeling scheduler`: binds pending pods to nodes, a client of the API server over
HTTP only (kubeapi.client), never of its internals.

model.py     a pod's requests and ports; NodeInfo (a node and what its pods take)
filters.py   can the pod run there (pure; the kube-scheduler's plugins and words)
scores.py    how good a feasible node is (pure); random tie-break
messages.py  the "0/N nodes are available: ..." text of an unschedulable pod
decide.py    one decision: Bind(node) or Unschedulable(message) (pure)
cache.py     nodes and bound/assumed pods; queue.py: pending pods and retries
leader.py    re-exports control.leader; scheduler.py: watches, loop, Bindings, status
main.py      the command line
"""
