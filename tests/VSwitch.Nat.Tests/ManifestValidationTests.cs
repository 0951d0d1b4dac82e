using VSwitch.Nat.Cluster;
using static VSwitch.Nat.Tests.ManifestTestKit;

namespace VSwitch.Nat.Tests;

/// <summary>Every validation error: exact message, file, line and column, object and field path.</summary>
public class ManifestValidationTests
{
    private const string Ip = "clusterIP: 10.96.0.9\n";
    private const string DnsLabel = "lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
    private const string PortNameRule = "lower-case letters, digits and '-', at least one letter, no leading, trailing or doubled '-', at most 15 characters";

    [Fact]
    public void TheExampleFromTheSpecification()
    {
        string text = Service(Ip + "ports:\n- name: a\n  port: 80\n- name: b\n  port: 70000");
        FailsWith(text, "70000", "Service default/web: spec.ports[1].port: 70000 is not a port (1-65535)");
        Assert.Equal("12:11", At(text, "70000"));
    }

    [Theory]
    // Ports
    [InlineData(Ip + "ports:\n- port: 0", "0\n", 1, "spec.ports[0].port: 0 is not a port (1-65535)")]
    [InlineData(Ip + "ports:\n- port: -1", "-1", 1, "spec.ports[0].port: -1 is not a port (1-65535)")]
    [InlineData(Ip + "ports:\n- port: 99999999999999999999", "9999", 1, "spec.ports[0].port: 99999999999999999999 is not a port (1-65535)")]
    [InlineData(Ip + "ports:\n- port: \"80\"", "\"80\"", 1, "spec.ports[0].port: expected an integer, found the quoted string '80'")]
    [InlineData(Ip + "ports:\n- port: 80.5", "80.5", 1, "spec.ports[0].port: expected an integer, found '80.5'")]
    [InlineData(Ip + "ports:\n- name: a", "name: a", 1, "spec.ports[0].port: required")]
    [InlineData(Ip + "ports:\n- port: 80\n  targetPort: 70000", "70000", 1, "spec.ports[0].targetPort: 70000 is not a port (1-65535)")]
    [InlineData(Ip + "ports:\n- port: 80\n  targetPort: HTTP", "HTTP", 1, "spec.ports[0].targetPort: 'HTTP' is neither a port number (1-65535) nor a port name (" + PortNameRule + ")")]
    [InlineData(Ip + "ports:\n- port: 80\n  targetPort: a-very-long-port-name", "a-very", 1, "spec.ports[0].targetPort: 'a-very-long-port-name' is neither a port number (1-65535) nor a port name (" + PortNameRule + ")")]
    [InlineData(Ip + "ports:\n- port: 80\n  targetPort: \"8080\"", "\"8080\"", 1, "spec.ports[0].targetPort: '8080' is neither a port number (1-65535) nor a port name (" + PortNameRule + "); a quoted number is a name: write 8080 without quotes for a port number")]
    [InlineData(Ip + "ports:\n- port: 80\n  targetPort: [80]", "[80]", 1, "spec.ports[0].targetPort: expected a port number or a port name, found a list")]
    [InlineData(Ip + "ports:\n- port: 80\n  protocol: SCTP", "SCTP", 1, "spec.ports[0].protocol: SCTP is not supported (TCP and UDP only)")]
    [InlineData(Ip + "ports:\n- port: 80\n  protocol: tcp", "tcp", 1, "spec.ports[0].protocol: 'tcp' is not one of TCP, UDP (protocol names are upper case)")]
    [InlineData(Ip + "ports:\n- port: 80\n  protocol: ICMP", "ICMP", 1, "spec.ports[0].protocol: 'ICMP' is not one of TCP, UDP")]
    [InlineData(Ip + "ports:\n- name: HTTP\n  port: 80", "HTTP", 1, "spec.ports[0].name: 'HTTP' is not a valid port name (" + DnsLabel + ")")]
    [InlineData(Ip + "ports:\n- name: dup\n  port: 80\n- name: dup\n  port: 81", "dup", 2, "spec.ports[1].name: duplicate port name 'dup' (also spec.ports[0])")]
    [InlineData(Ip + "ports:\n- name: a\n  port: 8181\n- name: b\n  port: 8181", "8181", 2, "spec.ports[1].port: duplicate port TCP 8181 (also spec.ports[0])")]
    [InlineData(Ip + "ports:\n- name: a\n  port: 8181\n  protocol: UDP\n- name: b\n  port: 8181\n  protocol: UDP", "8181", 2, "spec.ports[1].port: duplicate port UDP 8181 (also spec.ports[0])")]
    [InlineData(Ip + "ports:\n- port: 80\n- name: b\n  port: 81", "port: 80", 1, "spec.ports[0].name: required when a Service has more than one port")]
    [InlineData(Ip + "ports: 80", "80", 1, "spec.ports: expected a list, found '80'")]
    [InlineData(Ip + "ports:\n- 80", "80", 1, "spec.ports[0]: expected a port (a mapping), found '80'")]
    [InlineData("clusterIP: 10.96.0.9", "clusterIP", 1, "spec.ports: required: at least one port (only headless and ExternalName Services may have none)")]
    // Node ports
    [InlineData(Ip + "ports:\n- port: 80\n  nodePort: 30080", "30080", 1, "spec.ports[0].nodePort: only NodePort and LoadBalancer Services have node ports (this one is type ClusterIP)")]
    [InlineData("type: ExternalName\nexternalName: a.example.com\nports:\n- port: 80\n  nodePort: 30080", "30080", 1, "spec.ports[0].nodePort: only NodePort and LoadBalancer Services have node ports (this one is type ExternalName)")]
    [InlineData("type: NodePort\n" + Ip + "ports:\n- port: 80\n  nodePort: 8080", "8080", 1, "spec.ports[0].nodePort: 8080 is outside the node port range 30000-32767")]
    [InlineData("type: LoadBalancer\n" + Ip + "ports:\n- port: 80\n  nodePort: 32768", "32768", 1, "spec.ports[0].nodePort: 32768 is outside the node port range 30000-32767")]
    [InlineData("type: NodePort\n" + Ip + "ports:\n- port: 80\n  nodePort: 70000", "70000", 1, "spec.ports[0].nodePort: 70000 is not a port (1-65535)")]
    [InlineData("type: NodePort\n" + Ip + "ports:\n- name: a\n  port: 80\n  nodePort: 30080\n- name: b\n  port: 81\n  nodePort: 30080", "30080", 2, "spec.ports[1].nodePort: node port 30080/TCP is already used by spec.ports[0]")]
    // Addresses
    [InlineData("clusterIP: 10.96.0.300\nports:\n- port: 80", "10.96.0.300", 1, "spec.clusterIP: '10.96.0.300' is not an IPv4 address")]
    [InlineData("clusterIP: fd00::1\nports:\n- port: 80", "fd00::1", 1, "spec.clusterIP: 'fd00::1' is an IPv6 address: IPv6 is not supported (IPv4 only)")]
    [InlineData("clusterIP: 0.0.0.0\nports:\n- port: 80", "0.0.0.0", 1, "spec.clusterIP: 0.0.0.0 is not a unicast address (unspecified, loopback, multicast and broadcast are not allowed)")]
    [InlineData("clusterIP: 127.0.0.1\nports:\n- port: 80", "127.0.0.1", 1, "spec.clusterIP: 127.0.0.1 is not a unicast address (unspecified, loopback, multicast and broadcast are not allowed)")]
    [InlineData("clusterIP: 239.1.1.1\nports:\n- port: 80", "239.1.1.1", 1, "spec.clusterIP: 239.1.1.1 is not a unicast address (unspecified, loopback, multicast and broadcast are not allowed)")]
    [InlineData("clusterIP: 10.96.0.9\nclusterIPs: [10.96.0.10]\nports:\n- port: 80", "10.96.0.10", 1, "spec.clusterIPs[0]: '10.96.0.10' does not match spec.clusterIP '10.96.0.9' (the first clusterIPs entry must equal clusterIP)")]
    [InlineData("clusterIP: None\nclusterIPs: [10.96.0.10]\nports:\n- port: 80", "10.96.0.10", 1, "spec.clusterIPs[0]: '10.96.0.10' does not match spec.clusterIP 'None' (the first clusterIPs entry must equal clusterIP)")]
    [InlineData("clusterIPs: [10.96.0.9, 10.96.0.10]\nports:\n- port: 80", "10.96.0.10", 1, "spec.clusterIPs[1]: a second cluster IP is not supported (IPv4 single-stack: one address per Service)")]
    [InlineData("clusterIPs: [None, 10.96.0.10]\nports:\n- port: 80", "None", 1, "spec.clusterIPs[0]: None (headless) must be the only entry")]
    [InlineData("ports:\n- port: 80", "ports", 1, "spec.clusterIP: required: VSwitch has no ClusterIP allocator, so a ClusterIP, NodePort or LoadBalancer Service must carry its address (or None for a headless Service)")]
    [InlineData("type: LoadBalancer\nclusterIP: ''\nports:\n- port: 80", "type", 1, "spec.clusterIP: required: VSwitch has no ClusterIP allocator, so a ClusterIP, NodePort or LoadBalancer Service must carry its address (or None for a headless Service)")]
    [InlineData("type: NodePort\nclusterIP: None\nports:\n- port: 80", "None", 1, "spec.clusterIP: None (headless) is not allowed for type NodePort")]
    [InlineData(Ip + "externalIPs: [192.0.2.1, 192.0.2]\nports:\n- port: 80", "192.0.2]", 1, "spec.externalIPs[1]: '192.0.2' is not an IPv4 address")]
    [InlineData(Ip + "ipFamilies: [IPv6]\nports:\n- port: 80", "IPv6", 1, "spec.ipFamilies[0]: IPv6 is not supported (IPv4 single-stack only)")]
    [InlineData(Ip + "ipFamilies: [IPX]\nports:\n- port: 80", "IPX", 1, "spec.ipFamilies[0]: 'IPX' is not one of IPv4, IPv6")]
    [InlineData(Ip + "ipFamilyPolicy: RequireDualStack\nports:\n- port: 80", "Require", 1, "spec.ipFamilyPolicy: RequireDualStack is not supported (IPv4 single-stack only)")]
    [InlineData(Ip + "ipFamilyPolicy: Single\nports:\n- port: 80", "Single", 1, "spec.ipFamilyPolicy: 'Single' is not one of SingleStack, PreferDualStack, RequireDualStack")]
    // ExternalName
    [InlineData("type: ExternalName", "type", 1, "spec.externalName: required: an ExternalName Service is an alias for this DNS name")]
    [InlineData("type: ExternalName\nexternalName: ''", "type", 1, "spec.externalName: required: an ExternalName Service is an alias for this DNS name")]
    [InlineData("type: ExternalName\nexternalName: Not_A.Name", "Not_A", 1, "spec.externalName: 'Not_A.Name' is not a DNS name (dot-separated labels of lower-case letters, digits and '-', each starting and ending with a letter or digit, at most 253 characters)")]
    [InlineData("type: ExternalName\nexternalName: db.example.com\nclusterIP: 10.96.0.9", "10.96.0.9", 1, "spec.clusterIP: must not be set for an ExternalName Service (it is a DNS alias, not an address)")]
    // Enumerations and other fields
    [InlineData("type: Ingress\n" + Ip + "ports:\n- port: 80", "Ingress", 1, "spec.type: 'Ingress' is not one of ClusterIP, NodePort, LoadBalancer, ExternalName")]
    [InlineData(Ip + "sessionAffinity: Sticky\nports:\n- port: 80", "Sticky", 1, "spec.sessionAffinity: 'Sticky' is not one of None, ClientIP")]
    [InlineData(Ip + "sessionAffinity: ClientIP\nsessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 0\nports:\n- port: 80", "0\n", 1, "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is out of range 1..86400 (seconds)")]
    [InlineData(Ip + "sessionAffinity: ClientIP\nsessionAffinityConfig:\n  clientIP:\n    timeoutSeconds: 86401\nports:\n- port: 80", "86401", 1, "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401 is out of range 1..86400 (seconds)")]
    [InlineData("type: NodePort\nexternalTrafficPolicy: Nearest\n" + Ip + "ports:\n- port: 80", "Nearest", 1, "spec.externalTrafficPolicy: 'Nearest' is not one of Cluster, Local")]
    [InlineData(Ip + "internalTrafficPolicy: Global\nports:\n- port: 80", "Global", 1, "spec.internalTrafficPolicy: 'Global' is not one of Cluster, Local")]
    [InlineData(Ip + "publishNotReadyAddresses: \"true\"\nports:\n- port: 80", "\"true\"", 1, "spec.publishNotReadyAddresses: expected true or false, found the quoted string 'true'")]
    [InlineData(Ip + "loadBalancerSourceRanges: [10.0.0.0/8]\nports:\n- port: 80", "[10.0", 1, "spec.loadBalancerSourceRanges: not supported: VSwitch does not filter clients by source range, and ignoring the field would open the Service to every source")]
    [InlineData(Ip + "selector: app=web\nports:\n- port: 80", "app=web", 1, "spec.selector: expected a mapping, found 'app=web'")]
    // Unknown fields
    [InlineData(Ip + "foo: 1\nports:\n- port: 80", "foo", 1, "spec.foo: unsupported field")]
    [InlineData(Ip + "ClusterIPs: [10.96.0.9]\nports:\n- port: 80", "ClusterIPs", 1, "spec.ClusterIPs: unsupported field (did you mean 'clusterIPs'?)")]
    [InlineData(Ip + "ports:\n- port: 80\n  targetport: 8080", "targetport", 1, "spec.ports[0].targetport: unsupported field (did you mean 'targetPort'?)")]
    [InlineData(Ip + "sessionAffinityConfig:\n  clientIP:\n    timeout: 5\nports:\n- port: 80", "timeout", 1, "spec.sessionAffinityConfig.clientIP.timeout: unsupported field")]
    [InlineData(Ip + "sessionAffinityConfig:\n  serverIP: {}\nports:\n- port: 80", "serverIP", 1, "spec.sessionAffinityConfig.serverIP: unsupported field")]
    public void ServiceSpecErrors(string spec, string needle, int occurrence, string message) =>
        FailsWith(Service(spec), needle, "Service default/web: " + message, occurrence);

    [Theory]
    [InlineData("addressType: IPv4\nendpoints:\n- addresses: [10.244.1]", "10.244.1]", 1, "endpoints[0].addresses[0]: '10.244.1' is not an IPv4 address")]
    [InlineData("addressType: IPv4\nendpoints:\n- addresses: [fd00::5]", "fd00::5", 1, "endpoints[0].addresses[0]: 'fd00::5' is an IPv6 address: IPv6 is not supported (IPv4 only)")]
    [InlineData("addressType: IPv4\nendpoints:\n- addresses: []", "addresses", 1, "endpoints[0].addresses: required: at least one address")]
    [InlineData("addressType: IPv4\nendpoints:\n- nodeName: n1", "nodeName", 1, "endpoints[0].addresses: required: at least one address")]
    [InlineData("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.1]\n  ip: 10.244.1.1", "ip:", 1, "endpoints[0].ip: unsupported field")]
    [InlineData("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.1]\n  conditions: {ready: true, healthy: true}", "healthy", 1, "endpoints[0].conditions.healthy: unsupported field")]
    [InlineData("addressType: IPv4\nendpoints:\n- addresses: [10.244.1.1]\n  conditions: {ready: maybe}", "maybe", 1, "endpoints[0].conditions.ready: expected true or false, found 'maybe'")]
    [InlineData("addressType: IPv4\nendpoints: {}", "{}", 1, "endpoints: expected a list, found a mapping")]
    [InlineData("addressType: IPv4\nports:\n- port: 80\n  number: 80", "number", 1, "ports[0].number: unsupported field")]
    [InlineData("addressType: IPv4\nports:\n- port: 0", "0", 1, "ports[0].port: 0 is not a port (1-65535)")]
    [InlineData("addressType: IPv4\nports:\n- name: a", "name: a", 1, "ports[0].port: required: a slice port without a number (all ports) is not supported")]
    [InlineData("addressType: IPv4\nports:\n- port: 80\n  protocol: SCTP", "SCTP", 1, "ports[0].protocol: SCTP is not supported (TCP and UDP only)")]
    [InlineData("addressType: IPv4\nports:\n- name: Http\n  port: 80", "Http", 1, "ports[0].name: 'Http' is not a valid port name (" + DnsLabel + ")")]
    [InlineData("addressType: IPv4\nports:\n- name: a\n  port: 80\n- name: a\n  port: 81", "a\n", 2, "ports[1].name: duplicate port name 'a' (also ports[0])")]
    [InlineData("addressType: IPv5", "IPv5", 1, "addressType: 'IPv5' is not one of IPv4, IPv6, FQDN")]
    [InlineData("endpoints: []", "apiVersion", 1, "addressType: required: IPv4 (IPv6 and FQDN slices are skipped)")]
    [InlineData("addressType: IPv4\nendpoint: []", "endpoint:", 1, "endpoint: unsupported field (did you mean 'endpoints'?)")]
    public void EndpointSliceErrors(string body, string needle, int occurrence, string message) =>
        FailsWith(Slice(body), needle, "EndpointSlice default/web-abc: " + message, occurrence);

    [Fact]
    public void EndpointSlice_WithoutTheServiceNameLabel()
    {
        string text = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n  labels:\n    app: web\naddressType: IPv4\n";
        FailsWith(text, "app: web", "EndpointSlice default/s: metadata.labels[\"kubernetes.io/service-name\"]: required: the label names the Service this slice belongs to");
        string noLabels = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\naddressType: IPv4\n";
        FailsWith(noLabels, "name: s", "EndpointSlice default/s: metadata.labels[\"kubernetes.io/service-name\"]: required: the label names the Service this slice belongs to");
    }

    [Fact]
    public void SameNodePortAndProtocolInTwoServices()
    {
        string a = Service("type: NodePort\nclusterIP: 10.96.0.1\nports:\n- port: 80\n  nodePort: 30080", name: "a");
        string b = Service("type: LoadBalancer\nclusterIP: 10.96.0.2\nports:\n- port: 8080\n  nodePort: 30080", name: "b");
        string text = a + "---\n" + b;
        FailsWith(text, "30080", "Service default/b: spec.ports[0].nodePort: node port 30080/TCP is already used by Service default/a (spec.ports[0])", occurrence: 2);
    }

    [Fact]
    public void SameNodePortWithDifferentProtocols_IsAllowed()
    {
        string a = Service("type: NodePort\nclusterIP: 10.96.0.1\nports:\n- port: 53\n  protocol: UDP\n  nodePort: 30053", name: "a");
        string b = Service("type: NodePort\nclusterIP: 10.96.0.2\nports:\n- port: 53\n  nodePort: 30053", name: "b");
        Assert.Equal(2, Read(a + "---\n" + b).Services.Count);
    }

    [Fact]
    public void SamePortNumberWithDifferentProtocols_IsAllowed()
    {
        string text = Service(Ip + "ports:\n- name: dns\n  port: 53\n  protocol: UDP\n- name: dns-tcp\n  port: 53");
        Assert.Equal(2, Read(text).Services[0].Ports.Count);
    }

    [Fact]
    public void NodePortRange_IsAnOption()
    {
        var options = new ManifestOptions { NodePortMin = 31000, NodePortMax = 31999 };
        string text = Service("type: NodePort\n" + Ip + "ports:\n- port: 80\n  nodePort: 30080");
        FailsWith(text, "30080", "Service default/web: spec.ports[0].nodePort: 30080 is outside the node port range 31000-31999", options: options);
        Assert.Equal(30080, Read(text).Services[0].Ports[0].NodePort);
    }

    [Fact]
    public void DuplicateServiceNames()
    {
        string text = Service(Ip + "ports:\n- port: 80") + "---\n" + Service("clusterIP: 10.96.0.10\nports:\n- port: 80");
        Assert.Equal("4:9", At(text, "web"));
        FailsWith(text, "web", "Service default/web: metadata.name: duplicate Service default/web: already defined at svc.yaml:4:9", occurrence: 2);
        // The same name in another namespace is another Service.
        string other = Service(Ip + "ports:\n- port: 80") + "---\n" + Service("clusterIP: 10.96.0.10\nports:\n- port: 80", ns: "shop");
        Assert.Equal(2, Read(other).Services.Count);
    }

    [Fact]
    public void DuplicateEndpointSliceNames()
    {
        string body = "addressType: IPv4\nendpoints:\n- addresses: [10.244.1.1]";
        string text = Slice(body, name: "s1") + "---\n" + Slice(body, name: "s1", service: "other");
        FailsWith(text, "s1", "EndpointSlice default/s1: metadata.name: duplicate EndpointSlice default/s1: already defined at svc.yaml:4:9", occurrence: 2);
    }

    [Theory]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\n", "namespace", "Service x/<no name>: metadata.name: required")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: Web_1\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\n", "Web_1", "Service default/Web_1: metadata.name: 'Web_1' is not a valid Service name (lower-case letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters)")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: 1web\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\n", "1web", "Service default/1web: metadata.name: '1web' is not a valid Service name (lower-case letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters)")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: Shop\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\n", "Shop", "Service Shop/web: metadata.namespace: 'Shop' is not a valid namespace (" + DnsLabel + ")")]
    [InlineData("apiVersion: v1\nkind: Service\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\n", "apiVersion", "Service default/<no name>: metadata: required")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata: web\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\n", "web", "Service default/<no name>: metadata: expected a mapping, found 'web'")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n", "apiVersion", "Service default/web: spec: required")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec: []\n", "[]", "Service default/web: spec: expected a mapping, found a list")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\nextra: 1\n", "extra", "Service default/web: extra: unsupported field")]
    [InlineData("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.9\n  ports:\n  - port: 80\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 300.1.1.1\n", "300.1.1.1", "Service default/web: status.loadBalancer.ingress[0].ip: '300.1.1.1' is not an IPv4 address")]
    [InlineData("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: Bad_Name\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\n", "Bad_Name", "EndpointSlice default/Bad_Name: metadata.name: 'Bad_Name' is not a valid name (dot-separated labels of lower-case letters, digits and '-', each starting and ending with a letter or digit, at most 253 characters)")]
    public void MetadataAndObjectErrors(string text, string needle, string message) => FailsWith(text, needle, message);

    [Theory]
    [InlineData("- a\n- b\n", "- a", "expected a Kubernetes object (a mapping with apiVersion and kind), found a list")]
    [InlineData("just text\n", "just", "expected a Kubernetes object (a mapping with apiVersion and kind), found 'just text'")]
    [InlineData("apiVersion: v1\nmetadata: {name: x}\n", "apiVersion", "kind: required")]
    [InlineData("apiVersion: v1\nkind: [Service]\n", "[Service]", "kind: expected a string, found a list")]
    [InlineData("kind: Service\nmetadata: {name: x}\n", "kind", "apiVersion: required: v1")]
    [InlineData("kind: EndpointSlice\nmetadata: {name: x}\n", "kind", "apiVersion: required: discovery.k8s.io/v1")]
    [InlineData("apiVersion: {v: 1}\nkind: Service\nmetadata: {name: x}\n", "{v: 1}", "apiVersion: expected a string, found a mapping")]
    [InlineData("apiVersion: v2\nkind: Service\nmetadata: {name: x}\n", "v2", "apiVersion: 'v2' is not supported for a Service (use v1)")]
    [InlineData("apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: x}\n", "discovery", "apiVersion: 'discovery.k8s.io/v1beta1' is not supported for an EndpointSlice (use discovery.k8s.io/v1)")]
    [InlineData("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n- apiVersion: v1\n  metadata: {}\n", "apiVersion: v1\n  metadata", "items[1]: kind: required")]
    [InlineData("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "{a: 1}", "items: expected a list, found a mapping")]
    public void DocumentErrors(string text, string needle, string message) => FailsWith(text, needle, message);

    [Fact]
    public void YamlSyntaxErrors_HaveFileLineAndColumn()
    {
        ManifestException e = Fails("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n namespace: x\n");
        Assert.Matches(@"^svc\.yaml:5:\d+: invalid YAML: \S.*$", Assert.Single(e.Errors));

        e = Fails("apiVersion: v1\nkind: Service\nspec: {ports: [1, 2}\n");
        Assert.Matches(@"^svc\.yaml:3:\d+: invalid YAML: \S.*$", Assert.Single(e.Errors));

        e = Fails("apiVersion: v1\nkind: Service\nkind: Pod\n");
        Assert.Equal("svc.yaml:3:1: invalid YAML: Duplicate key kind", Assert.Single(e.Errors));

        e = Fails("a:\n\tb: 1\n");
        Assert.StartsWith("svc.yaml:", Assert.Single(e.Errors), StringComparison.Ordinal);
        Assert.Contains("invalid YAML", e.Errors[0], StringComparison.Ordinal);

        e = Fails("a: *missing\n");
        Assert.StartsWith("svc.yaml:1:", Assert.Single(e.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void DeepNesting_IsRejectedNotAStackOverflow()
    {
        ManifestException e = Fails(new string('[', 100_000));
        Assert.Equal("svc.yaml:1:65: invalid YAML: collections nested deeper than 64 levels", Assert.Single(e.Errors));
        string deepBlock = string.Concat(Enumerable.Range(0, 200).Select(i => new string(' ', i) + "k:\n")) + new string(' ', 200) + "v: 1\n";
        Assert.Contains("nested deeper than 64 levels", Assert.Single(Fails(deepBlock).Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void AllErrorsOfTheSetAreCollectedAndSorted()
    {
        string text = Service("clusterIP: 10.96.0.300\nports:\n- port: 70000\n  protocol: SCTP", name: "a") + "---\n"
            + Slice("addressType: IPv4\nendpoints:\n- addresses: [10.244.1]", name: "a-1") + "---\n"
            + "kind: Pod\n";
        ManifestException e = Fails(text);
        Assert.Equal(
            [
                $"svc.yaml:{At(text, "10.96.0.300")}: Service default/a: spec.clusterIP: '10.96.0.300' is not an IPv4 address",
                $"svc.yaml:{At(text, "70000")}: Service default/a: spec.ports[0].port: 70000 is not a port (1-65535)",
                $"svc.yaml:{At(text, "SCTP")}: Service default/a: spec.ports[0].protocol: SCTP is not supported (TCP and UDP only)",
                $"svc.yaml:{At(text, "10.244.1]")}: EndpointSlice default/a-1: endpoints[0].addresses[0]: '10.244.1' is not an IPv4 address",
            ],
            e.Errors);
        Assert.Equal(string.Join(Environment.NewLine, e.Errors), e.Message);
    }

    [Fact]
    public void ErrorsInsideAList_NameTheObject()
    {
        string text = ManifestFixtures.KubectlList.Replace("targetPort: 9153", "targetPort: 99153", StringComparison.Ordinal);
        FailsWith(text, "99153", "Service kube-system/kube-dns: spec.ports[2].targetPort: 99153 is not a port (1-65535)");
    }
}
