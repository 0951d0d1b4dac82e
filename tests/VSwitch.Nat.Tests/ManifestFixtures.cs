namespace VSwitch.Nat.Tests;

/// <summary>Manifests in the shapes kubectl produces (<c>kubectl get svc,endpointslice -A -o yaml</c> / <c>-o json</c>),
/// managedFields and all.</summary>
internal static class ManifestFixtures
{
    /// <summary>A <c>kind: List</c> as kubectl prints it: the API server's own Service, a NodePort Service with a named
    /// targetPort, a LoadBalancer with status, kube-dns (UDP+TCP), a headless Service publishing not-ready addresses,
    /// their EndpointSlices, and objects of other kinds that must be skipped.</summary>
    public const string KubectlList = """
        apiVersion: v1
        items:
        - apiVersion: v1
          kind: Service
          metadata:
            creationTimestamp: "2025-03-02T09:14:07Z"
            labels:
              component: apiserver
              provider: kubernetes
            name: kubernetes
            namespace: default
            resourceVersion: "198"
            uid: 0c6f5a2e-4b1e-4a51-9d0e-0d1f2c3b4a59
          spec:
            clusterIP: 10.96.0.1
            clusterIPs:
            - 10.96.0.1
            internalTrafficPolicy: Cluster
            ipFamilies:
            - IPv4
            ipFamilyPolicy: SingleStack
            ports:
            - name: https
              port: 443
              protocol: TCP
              targetPort: 6443
            sessionAffinity: None
            type: ClusterIP
          status:
            loadBalancer: {}
        - apiVersion: v1
          kind: Service
          metadata:
            annotations:
              kubectl.kubernetes.io/last-applied-configuration: |
                {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"labels":{"app":"web"},"name":"web","namespace":"shop"},"spec":{"ports":[{"name":"http","nodePort":31380,"port":80,"targetPort":"http"}],"selector":{"app":"web"},"type":"NodePort"}}
            creationTimestamp: "2025-03-02T10:01:44Z"
            labels:
              app: web
            managedFields:
            - apiVersion: v1
              fieldsType: FieldsV1
              fieldsV1:
                f:metadata:
                  f:annotations:
                    .: {}
                    f:kubectl.kubernetes.io/last-applied-configuration: {}
                  f:labels:
                    .: {}
                    f:app: {}
                f:spec:
                  f:externalTrafficPolicy: {}
                  f:internalTrafficPolicy: {}
                  f:ports:
                    .: {}
                    k:{"port":80,"protocol":"TCP"}:
                      .: {}
                      f:name: {}
                      f:nodePort: {}
                      f:port: {}
                      f:protocol: {}
                      f:targetPort: {}
                  f:selector: {}
                  f:sessionAffinity: {}
                  f:type: {}
              manager: kubectl-client-side-apply
              operation: Update
              time: "2025-03-02T10:01:44Z"
            name: web
            namespace: shop
            resourceVersion: "5123"
            uid: 6f1e0a9b-2f7c-4d8e-9a61-3b5c7d9e1f20
          spec:
            clusterIP: 10.96.120.15
            clusterIPs:
            - 10.96.120.15
            externalTrafficPolicy: Cluster
            internalTrafficPolicy: Cluster
            ipFamilies:
            - IPv4
            ipFamilyPolicy: SingleStack
            ports:
            - name: http
              nodePort: 31380
              port: 80
              protocol: TCP
              targetPort: http
            selector:
              app: web
            sessionAffinity: None
            type: NodePort
          status:
            loadBalancer: {}
        - apiVersion: v1
          kind: Service
          metadata:
            creationTimestamp: "2025-03-02T10:05:12Z"
            finalizers:
            - service.kubernetes.io/load-balancer-cleanup
            labels:
              app: gateway
            name: gateway
            namespace: shop
            resourceVersion: "5301"
            uid: 9d3c1b7a-5e2f-4c8d-b1a0-7e6f5d4c3b2a
          spec:
            allocateLoadBalancerNodePorts: true
            clusterIP: 10.96.200.7
            clusterIPs:
            - 10.96.200.7
            externalIPs:
            - 192.0.2.50
            externalTrafficPolicy: Local
            healthCheckNodePort: 32001
            internalTrafficPolicy: Local
            ipFamilies:
            - IPv4
            ipFamilyPolicy: SingleStack
            loadBalancerClass: example.com/lb
            ports:
            - appProtocol: http
              name: http
              nodePort: 30080
              port: 80
              protocol: TCP
              targetPort: 8080
            - name: quic
              nodePort: 30443
              port: 443
              protocol: UDP
              targetPort: 8443
            selector:
              app: gateway
            sessionAffinity: ClientIP
            sessionAffinityConfig:
              clientIP:
                timeoutSeconds: 3600
            type: LoadBalancer
          status:
            loadBalancer:
              ingress:
              - ip: 203.0.113.10
                ipMode: VIP
              - hostname: gw.example.com
        - apiVersion: v1
          kind: Service
          metadata:
            annotations:
              prometheus.io/port: "9153"
              prometheus.io/scrape: "true"
            creationTimestamp: "2025-03-02T09:14:09Z"
            labels:
              k8s-app: kube-dns
              kubernetes.io/cluster-service: "true"
              kubernetes.io/name: CoreDNS
            name: kube-dns
            namespace: kube-system
            resourceVersion: "261"
            uid: 3a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d
          spec:
            clusterIP: 10.96.0.10
            clusterIPs:
            - 10.96.0.10
            internalTrafficPolicy: Cluster
            ipFamilies:
            - IPv4
            ipFamilyPolicy: SingleStack
            ports:
            - name: dns
              port: 53
              protocol: UDP
              targetPort: 53
            - name: dns-tcp
              port: 53
              protocol: TCP
              targetPort: 53
            - name: metrics
              port: 9153
              protocol: TCP
              targetPort: 9153
            selector:
              k8s-app: kube-dns
            sessionAffinity: None
            type: ClusterIP
          status:
            loadBalancer: {}
        - apiVersion: v1
          kind: Service
          metadata:
            name: db
            namespace: shop
          spec:
            clusterIP: None
            clusterIPs:
            - None
            ports:
            - name: pg
              port: 5432
              protocol: TCP
              targetPort: 5432
            publishNotReadyAddresses: true
            selector:
              app: db
            sessionAffinity: None
            type: ClusterIP
          status:
            loadBalancer: {}
        - addressType: IPv4
          apiVersion: discovery.k8s.io/v1
          endpoints:
          - addresses:
            - 172.18.0.2
            conditions:
              ready: true
          kind: EndpointSlice
          metadata:
            creationTimestamp: "2025-03-02T09:14:07Z"
            generation: 1
            labels:
              kubernetes.io/service-name: kubernetes
            name: kubernetes
            namespace: default
            resourceVersion: "200"
            uid: 5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d
          ports:
          - name: https
            port: 6443
            protocol: TCP
        - addressType: IPv4
          apiVersion: discovery.k8s.io/v1
          endpoints:
          - addresses:
            - 10.244.1.5
            conditions:
              ready: true
              serving: true
              terminating: false
            nodeName: node-1
            targetRef:
              kind: Pod
              name: web-6d4f8b7c9-abcde
              namespace: shop
              uid: 1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b
            zone: zone-a
          - addresses:
            - 10.244.2.7
            conditions:
              ready: false
              serving: true
              terminating: true
            nodeName: node-2
            targetRef:
              kind: Pod
              name: web-6d4f8b7c9-fghij
              namespace: shop
              uid: 2a3b4c5d-6e7f-4801-9a2b-3c4d5e6f7a8b
            zone: zone-b
          kind: EndpointSlice
          metadata:
            annotations:
              endpoints.kubernetes.io/last-change-trigger-time: "2025-03-02T10:02:10Z"
            creationTimestamp: "2025-03-02T10:01:44Z"
            generateName: web-
            generation: 3
            labels:
              app: web
              endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
              kubernetes.io/service-name: web
            managedFields:
            - apiVersion: discovery.k8s.io/v1
              fieldsType: FieldsV1
              fieldsV1:
                f:addressType: {}
                f:endpoints: {}
                f:metadata:
                  f:annotations:
                    .: {}
                    f:endpoints.kubernetes.io/last-change-trigger-time: {}
                  f:generateName: {}
                  f:labels:
                    .: {}
                    f:app: {}
                    f:endpointslice.kubernetes.io/managed-by: {}
                    f:kubernetes.io/service-name: {}
                  f:ownerReferences:
                    .: {}
                    k:{"uid":"6f1e0a9b-2f7c-4d8e-9a61-3b5c7d9e1f20"}: {}
                f:ports: {}
              manager: kube-controller-manager
              operation: Update
              time: "2025-03-02T10:02:10Z"
            name: web-7xk2p
            namespace: shop
            ownerReferences:
            - apiVersion: v1
              blockOwnerDeletion: true
              controller: true
              kind: Service
              name: web
              uid: 6f1e0a9b-2f7c-4d8e-9a61-3b5c7d9e1f20
            resourceVersion: "5190"
            uid: 7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e
          ports:
          - name: http
            port: 8080
            protocol: TCP
        - addressType: IPv4
          apiVersion: discovery.k8s.io/v1
          endpoints:
          - addresses:
            - 10.244.1.9
            conditions:
              ready: true
              serving: true
              terminating: false
            hints:
              forZones:
              - name: zone-a
            nodeName: node-1
            targetRef:
              kind: Pod
              name: coredns-7db6d8ff4d-4kq2n
              namespace: kube-system
              uid: 8e7d6c5b-4a39-4281-b0af-9e8d7c6b5a49
            zone: zone-a
          - addresses:
            - 10.244.2.3
            conditions:
              ready: true
              serving: true
              terminating: false
            nodeName: node-2
            zone: zone-b
          kind: EndpointSlice
          metadata:
            generateName: kube-dns-
            labels:
              kubernetes.io/service-name: kube-dns
            name: kube-dns-8x2fz
            namespace: kube-system
          ports:
          - name: dns-tcp
            port: 53
            protocol: TCP
          - name: dns
            port: 53
            protocol: UDP
          - name: metrics
            port: 9153
            protocol: TCP
        - addressType: IPv4
          apiVersion: discovery.k8s.io/v1
          endpoints:
          - addresses:
            - 10.244.1.20
            conditions:
              ready: false
            hostname: db-0
            nodeName: node-1
          kind: EndpointSlice
          metadata:
            labels:
              kubernetes.io/service-name: db
            name: db-q9w8e
            namespace: shop
          ports:
          - name: pg
            port: 5432
            protocol: TCP
        - addressType: IPv6
          apiVersion: discovery.k8s.io/v1
          endpoints:
          - addresses:
            - fd00:10:244::5
          kind: EndpointSlice
          metadata:
            labels:
              kubernetes.io/service-name: web
            name: web-v6abc
            namespace: shop
          ports:
          - name: http
            port: 8080
            protocol: TCP
        - apiVersion: v1
          kind: Pod
          metadata:
            name: web-6d4f8b7c9-abcde
            namespace: shop
          spec:
            containers:
            - image: nginx:1.27
              name: web
              ports:
              - containerPort: 8080
                name: http
        - apiVersion: networking.k8s.io/v1
          kind: NetworkPolicy
          metadata:
            name: deny-all
            namespace: shop
          spec:
            podSelector: {}
            policyTypes:
            - Ingress
        kind: List
        metadata:
          resourceVersion: ""
        """;

    /// <summary>The web Service and its slice from <see cref="KubectlList"/>, as <c>kubectl get -o json</c> prints them.</summary>
    public const string KubectlJson = """
        {
            "apiVersion": "v1",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "creationTimestamp": "2025-03-02T10:01:44Z",
                        "labels": {
                            "app": "web"
                        },
                        "managedFields": [
                            {
                                "apiVersion": "v1",
                                "fieldsType": "FieldsV1",
                                "fieldsV1": {
                                    "f:spec": {
                                        "f:ports": {
                                            ".": {},
                                            "k:{\"port\":80,\"protocol\":\"TCP\"}": {
                                                ".": {},
                                                "f:port": {}
                                            }
                                        }
                                    }
                                },
                                "manager": "kubectl-client-side-apply",
                                "operation": "Update",
                                "time": "2025-03-02T10:01:44Z"
                            }
                        ],
                        "name": "web",
                        "namespace": "shop",
                        "resourceVersion": "5123",
                        "uid": "6f1e0a9b-2f7c-4d8e-9a61-3b5c7d9e1f20"
                    },
                    "spec": {
                        "clusterIP": "10.96.120.15",
                        "clusterIPs": [
                            "10.96.120.15"
                        ],
                        "externalTrafficPolicy": "Cluster",
                        "internalTrafficPolicy": "Cluster",
                        "ipFamilies": [
                            "IPv4"
                        ],
                        "ipFamilyPolicy": "SingleStack",
                        "ports": [
                            {
                                "name": "http",
                                "nodePort": 31380,
                                "port": 80,
                                "protocol": "TCP",
                                "targetPort": "http"
                            }
                        ],
                        "selector": {
                            "app": "web"
                        },
                        "sessionAffinity": "None",
                        "type": "NodePort"
                    },
                    "status": {
                        "loadBalancer": {}
                    }
                },
                {
                    "addressType": "IPv4",
                    "apiVersion": "discovery.k8s.io/v1",
                    "endpoints": [
                        {
                            "addresses": [
                                "10.244.1.5"
                            ],
                            "conditions": {
                                "ready": true,
                                "serving": true,
                                "terminating": false
                            },
                            "nodeName": "node-1",
                            "targetRef": {
                                "kind": "Pod",
                                "name": "web-6d4f8b7c9-abcde",
                                "namespace": "shop",
                                "uid": "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b"
                            },
                            "zone": "zone-a"
                        },
                        {
                            "addresses": [
                                "10.244.2.7"
                            ],
                            "conditions": {
                                "ready": false,
                                "serving": true,
                                "terminating": true
                            },
                            "nodeName": "node-2",
                            "zone": "zone-b"
                        }
                    ],
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": "web-",
                        "labels": {
                            "kubernetes.io/service-name": "web"
                        },
                        "name": "web-7xk2p",
                        "namespace": "shop"
                    },
                    "ports": [
                        {
                            "name": "http",
                            "port": 8080,
                            "protocol": "TCP"
                        }
                    ]
                }
            ],
            "kind": "List",
            "metadata": {
                "resourceVersion": ""
            }
        }
        """;

    /// <summary>Hand-written multi-document YAML: defaults everywhere, comments, empty documents.</summary>
    public const string HandWritten = """
        # A hand-written Service: no namespace, protocol, targetPort or nodePort.
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: echo
        spec:
          type: NodePort
          clusterIP: 10.96.5.5
          ports:
          - port: 7
        ---
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: echo-1
          labels:
            kubernetes.io/service-name: echo
        addressType: IPv4
        endpoints:
        - addresses: [10.244.1.2]
        - addresses: [10.244.1.3]
          conditions: {ready: false}
        ports:
        - port: 7
        ...
        """;
}
