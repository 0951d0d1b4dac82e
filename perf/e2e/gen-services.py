#!/usr/bin/python3
"""Writes N Services (ClusterIP 10.96.0.10 + i, port 80 -> 8080) with one EndpointSlice of 5 endpoints each.

  gen-services.py N VARIANT FILE

VARIANT shifts the endpoints of Service 0 only, so two variants differ in exactly one Service.
The file is replaced atomically (written beside it, then renamed).
"""
import os
import sys


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    n, variant, path = int(argv[1]), int(argv[2]), argv[3]
    with open(path + ".tmp", "w") as f:
        for s in range(n):
            ip = 0x0A600000 + 10 + s
            vip = f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"
            f.write(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: bench}}\n"
                    f"spec: {{clusterIP: {vip}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n")
            shift = variant if s == 0 else 0
            eps = ", ".join(
                f"{{addresses: [10.244.{1 + (s * 5 + e + shift) // 250 % 250}.{2 + (s * 5 + e + shift) % 250}]}}"
                for e in range(5))
            f.write(f"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                    f"metadata: {{name: svc-{s}-x, namespace: bench, labels: {{kubernetes.io/service-name: svc-{s}}}}}\n"
                    f"addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{eps}]\n")
    os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
