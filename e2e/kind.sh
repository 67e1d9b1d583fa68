#!/usr/bin/env bash
# RustStrom in a real cluster, end to end, with kind. Needs docker, kind,
# kubectl and helm; takes a few minutes. Run it by hand or from the
# workflow's "e2e" job:
#
#   e2e/kind.sh
#
# 1. create a kind cluster; 2. build the image and load it into the nodes;
# 3. helm install the chart; 4. deploy two echo replicas, an Ingress and a
# BalancerPolicy; 5. curl through RustStrom; 6. check the Ingress status
# address, the policy's conditions and a metrics scrape; 7. restart the
# controller while a client sends requests, and count the failures (the
# goal is zero); 8. uninstall and delete the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${CLUSTER:-rust-strom-e2e}
image=rust-strom:e2e
ns=rust-strom
# The client loop: requests per second and seconds.
rate=${RATE:-20}
seconds=${SECONDS_UNDER_RESTART:-60}

say() { printf '\n== %s ==\n' "$*"; }
cleanup() {
    if [ -z "${KEEP:-}" ]; then
        say "delete the cluster (KEEP=1 keeps it)"
        kind delete cluster --name "$cluster" || true
    fi
}
trap cleanup EXIT

say "1. kind cluster $cluster"
kind create cluster --name "$cluster" --wait 120s

say "2. build $image and load it into the cluster"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

say "3. helm install"
# kind has no load balancer: a NodePort Service, whose cluster IP goes into
# the Ingress status.
helm install rust-strom charts/rust-strom --namespace "$ns" --create-namespace \
    --set image.repository=rust-strom --set image.tag=e2e --set image.pullPolicy=Never \
    --set service.type=NodePort --wait --timeout 3m

say "4. two echo replicas, an Ingress, a BalancerPolicy"
kubectl apply -f e2e/app.yaml
kubectl -n e2e rollout status deployment/echo --timeout 2m

# One-off requests from inside the cluster, to the chart's Service.
in_cluster() {
    kubectl run "curl-$RANDOM" --namespace e2e --image=curlimages/curl:8.11.1 \
        --restart=Never --rm -i --quiet --command -- sh -c "$1"
}
proxy="rust-strom.$ns.svc.cluster.local"

say "5. curl through RustStrom"
answers=$(in_cluster "for i in 1 2 3 4 5 6; do curl -sf -H 'Host: echo.e2e' http://$proxy/hostname; echo; done")
echo "$answers"
count=$(echo "$answers" | grep -c .)
[ "$count" -eq 6 ] || { echo "expected 6 answers"; exit 1; }
[ "$(echo "$answers" | sort -u | grep -c .)" -eq 2 ] || { echo "expected both replicas to answer"; exit 1; }

say "6a. the Ingress status holds the Service's cluster IP"
want=$(kubectl -n "$ns" get service rust-strom -o jsonpath='{.spec.clusterIP}')
for _ in $(seq 30); do
    got=$(kubectl -n e2e get ingress echo -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
    [ "$got" = "$want" ] && break
    sleep 1
done
echo "status: ${got:-none}, Service: $want"
[ "$got" = "$want" ]

say "6b. the BalancerPolicy is Accepted and ResolvedRefs"
kubectl -n e2e wait balancerpolicy/echo --for=condition=Accepted --timeout 30s
kubectl -n e2e wait balancerpolicy/echo --for=condition=ResolvedRefs --timeout 30s

say "6c. a metrics scrape counts the requests"
kubectl get --raw "/api/v1/namespaces/$ns/services/rust-strom-metrics:9090/proxy/metrics" \
    | grep -E '^(backend_requests_total\{backend="e2e/echo:80"\}|leader_is_leader|routing_table_routes)'

say "7. rollout restart under load: $rate requests/s for ${seconds}s"
total=$((rate * seconds))
kubectl run client --namespace e2e --image=curlimages/curl:8.11.1 --restart=Never --command -- sh -c "
    ok=0; failed=0; i=0
    while [ \$i -lt $total ]; do
        if curl -sf -o /dev/null -m 5 -H 'Host: echo.e2e' http://$proxy/; then ok=\$((ok+1)); else failed=\$((failed+1)); fi
        i=\$((i+1)); sleep $(awk "BEGIN { print 1 / $rate }")
    done
    echo \"sent $total ok \$ok failed \$failed\""
kubectl -n e2e wait pod/client --for=condition=Ready --timeout 60s
sleep 5
kubectl -n "$ns" rollout restart deployment/rust-strom
kubectl -n "$ns" rollout status deployment/rust-strom --timeout 3m
kubectl -n e2e wait pod/client --for=jsonpath='{.status.phase}'=Succeeded --timeout "$((seconds * 3))s"
result=$(kubectl -n e2e logs client | tail -1)
echo "$result"
failed=$(echo "$result" | awk '{ print $NF }')

say "8. uninstall"
kubectl delete -f e2e/app.yaml --wait
helm uninstall rust-strom --namespace "$ns" --wait

if [ "$failed" -ne 0 ]; then
    echo "FAILED: $failed requests failed during the controller's rollout restart"
    exit 1
fi
echo "e2e passed: no request failed during the rollout restart"
