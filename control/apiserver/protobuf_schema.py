"""The protobuf schema of what the API server decodes from
`application/vnd.kubernetes.protobuf` request bodies (protobuf.py): the kinds it
serves, the objects sent to their subresources (Binding, Eviction, Scale) and
DeleteOptions, with every message they reach.

Field numbers, types and JSON names are those of k8s.io/api v0.32 (core/v1, apps/v1,
policy/v1, coordination/v1, autoscaling/v1) and k8s.io/apimachinery (meta/v1,
resource.Quantity, intstr.IntOrString), as their Go types' `protobuf` and `json` struct
tags give them. They never change once released, so the table only grows.

The table: a message's qualified name on a line of its own, then its fields, each

    <number> <json name>[?] <type>      a field
    <number> ^<type>                    an embedded message whose fields appear inline in
                                        the JSON (Go's `json:",inline"`: Volume's
                                        VolumeSource, Probe's ProbeHandler, ...)

where <type> is a scalar (string, int32, int64, bool, bytes), a message's name (names
are unique across packages), `[T]` a repeated field, `{T}` a map<string, T>. `?` marks
a field whose zero value the JSON keeps (a pointer in the Go type, or a field without
`omitempty`): the Go encoder writes every non-pointer field, so on the wire an empty
string or a 0 may be nothing but Go's default, and Go's JSON encoder would leave it out.

Time, MicroTime, Quantity, IntOrString and FieldsV1 are messages on the wire that JSON
writes as strings, numbers or raw JSON (protobuf.py converts them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCALARS = frozenset({"string", "int32", "int64", "bool", "bytes"})
# Scalar types whose values are varints on the wire (the others are length-delimited).
VARINT_SCALARS = frozenset({"int32", "int64", "bool"})


@dataclass(frozen=True)
class Field:
    number: int
    json_name: str  # "" for an inline message
    type: str  # a scalar, or a message's qualified name
    repeated: bool = False
    map_values: bool = False  # a map<string, type>
    keep_zero: bool = False

    @property
    def inline(self) -> bool:
        return not self.json_name

    @property
    def is_message(self) -> bool:
        return self.type not in SCALARS


@dataclass(frozen=True)
class Message:
    name: str  # qualified: "core.v1.PodSpec"
    fields: dict[int, Field]


_TABLE = """
core.v1.Namespace
    1 metadata ObjectMeta, 2 spec NamespaceSpec, 3 status NamespaceStatus
meta.v1.ObjectMeta
    1 name string, 2 generateName string, 3 namespace string, 4 selfLink string, 5 uid string,
    6 resourceVersion string, 7 generation int64, 8 creationTimestamp Time,
    9 deletionTimestamp? Time, 10 deletionGracePeriodSeconds? int64, 11 labels {string},
    12 annotations {string}, 13 ownerReferences [OwnerReference], 14 finalizers [string],
    17 managedFields [ManagedFieldsEntry]
meta.v1.OwnerReference
    1 kind? string, 3 name? string, 4 uid? string, 5 apiVersion? string, 6 controller? bool,
    7 blockOwnerDeletion? bool
meta.v1.ManagedFieldsEntry
    1 manager string, 2 operation string, 3 apiVersion string, 4 time? Time,
    6 fieldsType string, 7 fieldsV1? FieldsV1, 8 subresource string
core.v1.NamespaceSpec
    1 finalizers [string]
core.v1.NamespaceStatus
    1 phase string, 2 conditions [NamespaceCondition]
core.v1.NamespaceCondition
    1 type? string, 2 status? string, 4 lastTransitionTime Time, 5 reason string,
    6 message string
core.v1.ConfigMap
    1 metadata ObjectMeta, 2 data {string}, 3 binaryData {bytes}, 4 immutable? bool
core.v1.Secret
    1 metadata ObjectMeta, 2 data {bytes}, 3 type string, 4 stringData {string},
    5 immutable? bool
core.v1.Service
    1 metadata ObjectMeta, 2 spec ServiceSpec, 3 status ServiceStatus
core.v1.ServiceSpec
    1 ports [ServicePort], 2 selector {string}, 3 clusterIP string, 4 type string,
    5 externalIPs [string], 7 sessionAffinity string, 8 loadBalancerIP string,
    9 loadBalancerSourceRanges [string], 10 externalName string,
    11 externalTrafficPolicy string, 12 healthCheckNodePort int32,
    13 publishNotReadyAddresses bool, 14 sessionAffinityConfig? SessionAffinityConfig,
    17 ipFamilyPolicy? string, 18 clusterIPs [string], 19 ipFamilies [string],
    20 allocateLoadBalancerNodePorts? bool, 21 loadBalancerClass? string,
    22 internalTrafficPolicy? string, 23 trafficDistribution? string
core.v1.ServicePort
    1 name string, 2 protocol string, 3 port? int32, 4 targetPort IntOrString, 5 nodePort int32,
    6 appProtocol? string
core.v1.SessionAffinityConfig
    1 clientIP? ClientIPConfig
core.v1.ClientIPConfig
    1 timeoutSeconds? int32
core.v1.ServiceStatus
    1 loadBalancer LoadBalancerStatus, 2 conditions [Condition]
core.v1.LoadBalancerStatus
    1 ingress [LoadBalancerIngress]
core.v1.LoadBalancerIngress
    1 ip string, 2 hostname string, 3 ipMode? string, 4 ports [PortStatus]
core.v1.PortStatus
    1 port? int32, 2 protocol? string, 3 error? string
meta.v1.Condition
    1 type? string, 2 status? string, 3 observedGeneration int64, 4 lastTransitionTime? Time,
    5 reason? string, 6 message? string
core.v1.ServiceAccount
    1 metadata ObjectMeta, 2 secrets [ObjectReference],
    3 imagePullSecrets [LocalObjectReference], 4 automountServiceAccountToken? bool
core.v1.ObjectReference
    1 kind string, 2 namespace string, 3 name string, 4 uid string, 5 apiVersion string,
    6 resourceVersion string, 7 fieldPath string
core.v1.LocalObjectReference
    1 name string
core.v1.Pod
    1 metadata ObjectMeta, 2 spec PodSpec, 3 status PodStatus
core.v1.PodSpec
    1 volumes [Volume], 2 containers [Container], 3 restartPolicy string,
    4 terminationGracePeriodSeconds? int64, 5 activeDeadlineSeconds? int64, 6 dnsPolicy string,
    7 nodeSelector {string}, 8 serviceAccountName string, 9 serviceAccount string,
    10 nodeName string, 11 hostNetwork bool, 12 hostPID bool, 13 hostIPC bool,
    14 securityContext? PodSecurityContext, 15 imagePullSecrets [LocalObjectReference],
    16 hostname string, 17 subdomain string, 18 affinity? Affinity, 19 schedulerName string,
    20 initContainers [Container], 21 automountServiceAccountToken? bool,
    22 tolerations [Toleration], 23 hostAliases [HostAlias], 24 priorityClassName string,
    25 priority? int32, 26 dnsConfig? PodDNSConfig, 27 shareProcessNamespace? bool,
    28 readinessGates [PodReadinessGate], 29 runtimeClassName? string,
    30 enableServiceLinks? bool, 31 preemptionPolicy? string, 32 overhead {Quantity},
    33 topologySpreadConstraints [TopologySpreadConstraint],
    34 ephemeralContainers [EphemeralContainer], 35 setHostnameAsFQDN? bool, 36 os? PodOS,
    37 hostUsers? bool, 38 schedulingGates [PodSchedulingGate],
    39 resourceClaims [PodResourceClaim], 40 resources? ResourceRequirements
core.v1.Volume
    1 name? string, 2 ^VolumeSource
core.v1.VolumeSource
    1 hostPath? HostPathVolumeSource, 2 emptyDir? EmptyDirVolumeSource,
    3 gcePersistentDisk? GCEPersistentDiskVolumeSource,
    4 awsElasticBlockStore? AWSElasticBlockStoreVolumeSource, 5 gitRepo? GitRepoVolumeSource,
    6 secret? SecretVolumeSource, 7 nfs? NFSVolumeSource, 8 iscsi? ISCSIVolumeSource,
    9 glusterfs? GlusterfsVolumeSource,
    10 persistentVolumeClaim? PersistentVolumeClaimVolumeSource, 11 rbd? RBDVolumeSource,
    12 flexVolume? FlexVolumeSource, 13 cinder? CinderVolumeSource,
    14 cephfs? CephFSVolumeSource, 15 flocker? FlockerVolumeSource,
    16 downwardAPI? DownwardAPIVolumeSource, 17 fc? FCVolumeSource,
    18 azureFile? AzureFileVolumeSource, 19 configMap? ConfigMapVolumeSource,
    20 vsphereVolume? VsphereVirtualDiskVolumeSource, 21 quobyte? QuobyteVolumeSource,
    22 azureDisk? AzureDiskVolumeSource,
    23 photonPersistentDisk? PhotonPersistentDiskVolumeSource,
    24 portworxVolume? PortworxVolumeSource, 25 scaleIO? ScaleIOVolumeSource,
    26 projected? ProjectedVolumeSource, 27 storageos? StorageOSVolumeSource,
    28 csi? CSIVolumeSource, 29 ephemeral? EphemeralVolumeSource, 30 image? ImageVolumeSource
core.v1.HostPathVolumeSource
    1 path? string, 2 type? string
core.v1.EmptyDirVolumeSource
    1 medium string, 2 sizeLimit? Quantity
core.v1.GCEPersistentDiskVolumeSource
    1 pdName? string, 2 fsType string, 3 partition int32, 4 readOnly bool
core.v1.AWSElasticBlockStoreVolumeSource
    1 volumeID? string, 2 fsType string, 3 partition int32, 4 readOnly bool
core.v1.GitRepoVolumeSource
    1 repository? string, 2 revision string, 3 directory string
core.v1.SecretVolumeSource
    1 secretName string, 2 items [KeyToPath], 3 defaultMode? int32, 4 optional? bool
core.v1.KeyToPath
    1 key? string, 2 path? string, 3 mode? int32
core.v1.NFSVolumeSource
    1 server? string, 2 path? string, 3 readOnly bool
core.v1.ISCSIVolumeSource
    1 targetPortal? string, 2 iqn? string, 3 lun? int32, 4 iscsiInterface string,
    5 fsType string, 6 readOnly bool, 7 portals [string], 8 chapAuthDiscovery bool,
    10 secretRef? LocalObjectReference, 11 chapAuthSession bool, 12 initiatorName? string
core.v1.GlusterfsVolumeSource
    1 endpoints? string, 2 path? string, 3 readOnly bool
core.v1.PersistentVolumeClaimVolumeSource
    1 claimName? string, 2 readOnly bool
core.v1.RBDVolumeSource
    1 monitors [string], 2 image? string, 3 fsType string, 4 pool string, 5 user string,
    6 keyring string, 7 secretRef? LocalObjectReference, 8 readOnly bool
core.v1.FlexVolumeSource
    1 driver? string, 2 fsType string, 3 secretRef? LocalObjectReference, 4 readOnly bool,
    5 options {string}
core.v1.CinderVolumeSource
    1 volumeID? string, 2 fsType string, 3 readOnly bool, 4 secretRef? LocalObjectReference
core.v1.CephFSVolumeSource
    1 monitors [string], 2 path string, 3 user string, 4 secretFile string,
    5 secretRef? LocalObjectReference, 6 readOnly bool
core.v1.FlockerVolumeSource
    1 datasetName string, 2 datasetUUID string
core.v1.DownwardAPIVolumeSource
    1 items [DownwardAPIVolumeFile], 2 defaultMode? int32
core.v1.DownwardAPIVolumeFile
    1 path? string, 2 fieldRef? ObjectFieldSelector, 3 resourceFieldRef? ResourceFieldSelector,
    4 mode? int32
core.v1.ObjectFieldSelector
    1 apiVersion string, 2 fieldPath? string
core.v1.ResourceFieldSelector
    1 containerName string, 2 resource? string, 3 divisor Quantity
core.v1.FCVolumeSource
    1 targetWWNs [string], 2 lun? int32, 3 fsType string, 4 readOnly bool, 5 wwids [string]
core.v1.AzureFileVolumeSource
    1 secretName? string, 2 shareName? string, 3 readOnly bool
core.v1.ConfigMapVolumeSource
    1 ^LocalObjectReference, 2 items [KeyToPath], 3 defaultMode? int32, 4 optional? bool
core.v1.VsphereVirtualDiskVolumeSource
    1 volumePath? string, 2 fsType string, 3 storagePolicyName string, 4 storagePolicyID string
core.v1.QuobyteVolumeSource
    1 registry? string, 2 volume? string, 3 readOnly bool, 4 user string, 5 group string,
    6 tenant string
core.v1.AzureDiskVolumeSource
    1 diskName? string, 2 diskURI? string, 3 cachingMode? string, 4 fsType? string,
    5 readOnly? bool, 6 kind? string
core.v1.PhotonPersistentDiskVolumeSource
    1 pdID? string, 2 fsType string
core.v1.ProjectedVolumeSource
    1 sources [VolumeProjection], 2 defaultMode? int32
core.v1.VolumeProjection
    1 secret? SecretProjection, 2 downwardAPI? DownwardAPIProjection,
    3 configMap? ConfigMapProjection, 4 serviceAccountToken? ServiceAccountTokenProjection,
    5 clusterTrustBundle? ClusterTrustBundleProjection
core.v1.SecretProjection
    1 ^LocalObjectReference, 2 items [KeyToPath], 4 optional? bool
core.v1.DownwardAPIProjection
    1 items [DownwardAPIVolumeFile]
core.v1.ConfigMapProjection
    1 ^LocalObjectReference, 2 items [KeyToPath], 4 optional? bool
core.v1.ServiceAccountTokenProjection
    1 audience string, 2 expirationSeconds? int64, 3 path? string
core.v1.ClusterTrustBundleProjection
    1 name? string, 2 signerName? string, 3 labelSelector? LabelSelector, 4 path? string,
    5 optional? bool
meta.v1.LabelSelector
    1 matchLabels {string}, 2 matchExpressions [LabelSelectorRequirement]
meta.v1.LabelSelectorRequirement
    1 key? string, 2 operator? string, 3 values [string]
core.v1.PortworxVolumeSource
    1 volumeID? string, 2 fsType string, 3 readOnly bool
core.v1.ScaleIOVolumeSource
    1 gateway? string, 2 system? string, 3 secretRef? LocalObjectReference, 4 sslEnabled bool,
    5 protectionDomain string, 6 storagePool string, 7 storageMode string, 8 volumeName string,
    9 fsType string, 10 readOnly bool
core.v1.StorageOSVolumeSource
    1 volumeName string, 2 volumeNamespace string, 3 fsType string, 4 readOnly bool,
    5 secretRef? LocalObjectReference
core.v1.CSIVolumeSource
    1 driver? string, 2 readOnly? bool, 3 fsType? string, 4 volumeAttributes {string},
    5 nodePublishSecretRef? LocalObjectReference
core.v1.EphemeralVolumeSource
    1 volumeClaimTemplate? PersistentVolumeClaimTemplate
core.v1.PersistentVolumeClaimTemplate
    1 metadata ObjectMeta, 2 spec? PersistentVolumeClaimSpec
core.v1.PersistentVolumeClaimSpec
    1 accessModes [string], 2 resources VolumeResourceRequirements, 3 volumeName string,
    4 selector? LabelSelector, 5 storageClassName? string, 6 volumeMode? string,
    7 dataSource? TypedLocalObjectReference, 8 dataSourceRef? TypedObjectReference,
    9 volumeAttributesClassName? string
core.v1.VolumeResourceRequirements
    1 limits {Quantity}, 2 requests {Quantity}
core.v1.TypedLocalObjectReference
    1 apiGroup? string, 2 kind? string, 3 name? string
core.v1.TypedObjectReference
    1 apiGroup? string, 2 kind? string, 3 name? string, 4 namespace? string
core.v1.ImageVolumeSource
    1 reference string, 2 pullPolicy string
core.v1.Container
    1 name? string, 2 image string, 3 command [string], 4 args [string], 5 workingDir string,
    6 ports [ContainerPort], 7 env [EnvVar], 8 resources ResourceRequirements,
    9 volumeMounts [VolumeMount], 10 livenessProbe? Probe, 11 readinessProbe? Probe,
    12 lifecycle? Lifecycle, 13 terminationMessagePath string, 14 imagePullPolicy string,
    15 securityContext? SecurityContext, 16 stdin bool, 17 stdinOnce bool, 18 tty bool,
    19 envFrom [EnvFromSource], 20 terminationMessagePolicy string,
    21 volumeDevices [VolumeDevice], 22 startupProbe? Probe,
    23 resizePolicy [ContainerResizePolicy], 24 restartPolicy? string
core.v1.ContainerPort
    1 name string, 2 hostPort int32, 3 containerPort? int32, 4 protocol string, 5 hostIP string
core.v1.EnvFromSource
    1 prefix string, 2 configMapRef? ConfigMapEnvSource, 3 secretRef? SecretEnvSource
core.v1.ConfigMapEnvSource
    1 ^LocalObjectReference, 2 optional? bool
core.v1.SecretEnvSource
    1 ^LocalObjectReference, 2 optional? bool
core.v1.EnvVar
    1 name? string, 2 value string, 3 valueFrom? EnvVarSource
core.v1.EnvVarSource
    1 fieldRef? ObjectFieldSelector, 2 resourceFieldRef? ResourceFieldSelector,
    3 configMapKeyRef? ConfigMapKeySelector, 4 secretKeyRef? SecretKeySelector
core.v1.ConfigMapKeySelector
    1 ^LocalObjectReference, 2 key? string, 3 optional? bool
core.v1.SecretKeySelector
    1 ^LocalObjectReference, 2 key? string, 3 optional? bool
core.v1.ResourceRequirements
    1 limits {Quantity}, 2 requests {Quantity}, 3 claims [ResourceClaim]
core.v1.ResourceClaim
    1 name? string, 2 request string
core.v1.ContainerResizePolicy
    1 resourceName? string, 2 restartPolicy? string
core.v1.VolumeMount
    1 name? string, 2 readOnly bool, 3 mountPath? string, 4 subPath string,
    5 mountPropagation? string, 6 subPathExpr string, 7 recursiveReadOnly? string
core.v1.VolumeDevice
    1 name? string, 2 devicePath? string
core.v1.Probe
    1 ^ProbeHandler, 2 initialDelaySeconds int32, 3 timeoutSeconds int32, 4 periodSeconds int32,
    5 successThreshold int32, 6 failureThreshold int32, 7 terminationGracePeriodSeconds? int64
core.v1.ProbeHandler
    1 exec? ExecAction, 2 httpGet? HTTPGetAction, 3 tcpSocket? TCPSocketAction,
    4 grpc? GRPCAction
core.v1.ExecAction
    1 command [string]
core.v1.HTTPGetAction
    1 path string, 2 port? IntOrString, 3 host string, 4 scheme string,
    5 httpHeaders [HTTPHeader]
core.v1.HTTPHeader
    1 name? string, 2 value? string
core.v1.TCPSocketAction
    1 port? IntOrString, 2 host string
core.v1.GRPCAction
    1 port? int32, 2 service? string
core.v1.Lifecycle
    1 postStart? LifecycleHandler, 2 preStop? LifecycleHandler
core.v1.LifecycleHandler
    1 exec? ExecAction, 2 httpGet? HTTPGetAction, 3 tcpSocket? TCPSocketAction,
    4 sleep? SleepAction
core.v1.SleepAction
    1 seconds? int64
core.v1.SecurityContext
    1 capabilities? Capabilities, 2 privileged? bool, 3 seLinuxOptions? SELinuxOptions,
    4 runAsUser? int64, 5 runAsNonRoot? bool, 6 readOnlyRootFilesystem? bool,
    7 allowPrivilegeEscalation? bool, 8 runAsGroup? int64, 9 procMount? string,
    10 windowsOptions? WindowsSecurityContextOptions, 11 seccompProfile? SeccompProfile,
    12 appArmorProfile? AppArmorProfile
core.v1.Capabilities
    1 add [string], 2 drop [string]
core.v1.SELinuxOptions
    1 user string, 2 role string, 3 type string, 4 level string
core.v1.WindowsSecurityContextOptions
    1 gmsaCredentialSpecName? string, 2 gmsaCredentialSpec? string, 3 runAsUserName? string,
    4 hostProcess? bool
core.v1.SeccompProfile
    1 type? string, 2 localhostProfile? string
core.v1.AppArmorProfile
    1 type? string, 2 localhostProfile? string
core.v1.EphemeralContainer
    1 ^EphemeralContainerCommon, 2 targetContainerName string
core.v1.EphemeralContainerCommon
    1 name? string, 2 image string, 3 command [string], 4 args [string], 5 workingDir string,
    6 ports [ContainerPort], 7 env [EnvVar], 8 resources ResourceRequirements,
    9 volumeMounts [VolumeMount], 10 livenessProbe? Probe, 11 readinessProbe? Probe,
    12 lifecycle? Lifecycle, 13 terminationMessagePath string, 14 imagePullPolicy string,
    15 securityContext? SecurityContext, 16 stdin bool, 17 stdinOnce bool, 18 tty bool,
    19 envFrom [EnvFromSource], 20 terminationMessagePolicy string,
    21 volumeDevices [VolumeDevice], 22 startupProbe? Probe,
    23 resizePolicy [ContainerResizePolicy], 24 restartPolicy? string
core.v1.PodSecurityContext
    1 seLinuxOptions? SELinuxOptions, 2 runAsUser? int64, 3 runAsNonRoot? bool,
    4 supplementalGroups [int64], 5 fsGroup? int64, 6 runAsGroup? int64, 7 sysctls [Sysctl],
    8 windowsOptions? WindowsSecurityContextOptions, 9 fsGroupChangePolicy? string,
    10 seccompProfile? SeccompProfile, 11 appArmorProfile? AppArmorProfile,
    12 supplementalGroupsPolicy? string, 13 seLinuxChangePolicy? string
core.v1.Sysctl
    1 name? string, 2 value? string
core.v1.Affinity
    1 nodeAffinity? NodeAffinity, 2 podAffinity? PodAffinity,
    3 podAntiAffinity? PodAntiAffinity
core.v1.NodeAffinity
    1 requiredDuringSchedulingIgnoredDuringExecution? NodeSelector,
    2 preferredDuringSchedulingIgnoredDuringExecution [PreferredSchedulingTerm]
core.v1.NodeSelector
    1 nodeSelectorTerms [NodeSelectorTerm]
core.v1.NodeSelectorTerm
    1 matchExpressions [NodeSelectorRequirement], 2 matchFields [NodeSelectorRequirement]
core.v1.NodeSelectorRequirement
    1 key? string, 2 operator? string, 3 values [string]
core.v1.PreferredSchedulingTerm
    1 weight? int32, 2 preference? NodeSelectorTerm
core.v1.PodAffinity
    1 requiredDuringSchedulingIgnoredDuringExecution [PodAffinityTerm],
    2 preferredDuringSchedulingIgnoredDuringExecution [WeightedPodAffinityTerm]
core.v1.PodAffinityTerm
    1 labelSelector? LabelSelector, 2 namespaces [string], 3 topologyKey? string,
    4 namespaceSelector? LabelSelector, 5 matchLabelKeys [string], 6 mismatchLabelKeys [string]
core.v1.WeightedPodAffinityTerm
    1 weight? int32, 2 podAffinityTerm? PodAffinityTerm
core.v1.PodAntiAffinity
    1 requiredDuringSchedulingIgnoredDuringExecution [PodAffinityTerm],
    2 preferredDuringSchedulingIgnoredDuringExecution [WeightedPodAffinityTerm]
core.v1.Toleration
    1 key string, 2 operator string, 3 value string, 4 effect string,
    5 tolerationSeconds? int64
core.v1.HostAlias
    1 ip? string, 2 hostnames [string]
core.v1.PodDNSConfig
    1 nameservers [string], 2 searches [string], 3 options [PodDNSConfigOption]
core.v1.PodDNSConfigOption
    1 name string, 2 value? string
core.v1.PodReadinessGate
    1 conditionType? string
core.v1.TopologySpreadConstraint
    1 maxSkew? int32, 2 topologyKey? string, 3 whenUnsatisfiable? string,
    4 labelSelector? LabelSelector, 5 minDomains? int32, 6 nodeAffinityPolicy? string,
    7 nodeTaintsPolicy? string, 8 matchLabelKeys [string]
core.v1.PodOS
    1 name? string
core.v1.PodSchedulingGate
    1 name? string
core.v1.PodResourceClaim
    1 name? string, 3 resourceClaimName? string, 4 resourceClaimTemplateName? string
core.v1.PodStatus
    1 phase string, 2 conditions [PodCondition], 3 message string, 4 reason string,
    5 hostIP string, 6 podIP string, 7 startTime? Time, 8 containerStatuses [ContainerStatus],
    9 qosClass string, 10 initContainerStatuses [ContainerStatus], 11 nominatedNodeName string,
    12 podIPs [PodIP], 13 ephemeralContainerStatuses [ContainerStatus], 14 resize string,
    15 resourceClaimStatuses [PodResourceClaimStatus], 16 hostIPs [HostIP]
core.v1.PodCondition
    1 type? string, 2 status? string, 3 lastProbeTime Time, 4 lastTransitionTime Time,
    5 reason string, 6 message string
core.v1.HostIP
    1 ip? string
core.v1.PodIP
    1 ip? string
core.v1.ContainerStatus
    1 name? string, 2 state ContainerState, 3 lastState ContainerState, 4 ready? bool,
    5 restartCount? int32, 6 image? string, 7 imageID? string, 8 containerID string,
    9 started? bool, 10 allocatedResources {Quantity}, 11 resources? ResourceRequirements,
    12 volumeMounts [VolumeMountStatus], 13 user? ContainerUser,
    14 allocatedResourcesStatus [ResourceStatus]
core.v1.ContainerState
    1 waiting? ContainerStateWaiting, 2 running? ContainerStateRunning,
    3 terminated? ContainerStateTerminated
core.v1.ContainerStateWaiting
    1 reason string, 2 message string
core.v1.ContainerStateRunning
    1 startedAt Time
core.v1.ContainerStateTerminated
    1 exitCode? int32, 2 signal int32, 3 reason string, 4 message string, 5 startedAt Time,
    6 finishedAt Time, 7 containerID string
core.v1.VolumeMountStatus
    1 name? string, 2 mountPath? string, 3 readOnly bool, 4 recursiveReadOnly? string
core.v1.ContainerUser
    1 linux? LinuxContainerUser
core.v1.LinuxContainerUser
    1 uid? int64, 2 gid? int64, 3 supplementalGroups [int64]
core.v1.ResourceStatus
    1 name? string, 2 resources [ResourceHealth]
core.v1.ResourceHealth
    1 resourceID? string, 2 health string
core.v1.PodResourceClaimStatus
    1 name? string, 2 resourceClaimName? string
core.v1.Endpoints
    1 metadata ObjectMeta, 2 subsets [EndpointSubset]
core.v1.EndpointSubset
    1 addresses [EndpointAddress], 2 notReadyAddresses [EndpointAddress],
    3 ports [EndpointPort]
core.v1.EndpointAddress
    1 ip? string, 2 targetRef? ObjectReference, 3 hostname string, 4 nodeName? string
core.v1.EndpointPort
    1 name string, 2 port? int32, 3 protocol string, 4 appProtocol? string
core.v1.Event
    1 metadata? ObjectMeta, 2 involvedObject? ObjectReference, 3 reason string,
    4 message string, 5 source EventSource, 6 firstTimestamp Time, 7 lastTimestamp Time,
    8 count int32, 9 type string, 10 eventTime MicroTime, 11 series? EventSeries,
    12 action string, 13 related? ObjectReference, 14 reportingComponent? string,
    15 reportingInstance? string
core.v1.EventSource
    1 component string, 2 host string
core.v1.EventSeries
    1 count int32, 2 lastObservedTime MicroTime
core.v1.Node
    1 metadata ObjectMeta, 2 spec NodeSpec, 3 status NodeStatus
core.v1.NodeSpec
    1 podCIDR string, 2 externalID string, 3 providerID string, 4 unschedulable bool,
    5 taints [Taint], 6 configSource? NodeConfigSource, 7 podCIDRs [string]
core.v1.Taint
    1 key? string, 2 value string, 3 effect? string, 4 timeAdded? Time
core.v1.NodeConfigSource
    2 configMap? ConfigMapNodeConfigSource
core.v1.ConfigMapNodeConfigSource
    1 namespace? string, 2 name? string, 3 uid string, 4 resourceVersion string,
    5 kubeletConfigKey? string
core.v1.NodeStatus
    1 capacity {Quantity}, 2 allocatable {Quantity}, 3 phase string,
    4 conditions [NodeCondition], 5 addresses [NodeAddress],
    6 daemonEndpoints NodeDaemonEndpoints, 7 nodeInfo NodeSystemInfo, 8 images [ContainerImage],
    9 volumesInUse [string], 10 volumesAttached [AttachedVolume], 11 config? NodeConfigStatus,
    12 runtimeHandlers [NodeRuntimeHandler], 13 features? NodeFeatures
core.v1.NodeCondition
    1 type? string, 2 status? string, 3 lastHeartbeatTime Time, 4 lastTransitionTime Time,
    5 reason string, 6 message string
core.v1.NodeAddress
    1 type? string, 2 address? string
core.v1.NodeDaemonEndpoints
    1 kubeletEndpoint DaemonEndpoint
core.v1.DaemonEndpoint
    1 Port? int32
core.v1.NodeSystemInfo
    1 machineID? string, 2 systemUUID? string, 3 bootID? string, 4 kernelVersion? string,
    5 osImage? string, 6 containerRuntimeVersion? string, 7 kubeletVersion? string,
    8 kubeProxyVersion? string, 9 operatingSystem? string, 10 architecture? string
core.v1.ContainerImage
    1 names [string], 2 sizeBytes int64
core.v1.AttachedVolume
    1 name? string, 2 devicePath? string
core.v1.NodeConfigStatus
    1 assigned? NodeConfigSource, 2 active? NodeConfigSource, 3 lastKnownGood? NodeConfigSource,
    4 error string
core.v1.NodeRuntimeHandler
    1 name? string, 2 features? NodeRuntimeHandlerFeatures
core.v1.NodeRuntimeHandlerFeatures
    1 recursiveReadOnlyMounts? bool, 2 userNamespaces? bool
core.v1.NodeFeatures
    1 supplementalGroupsPolicy? bool
core.v1.Binding
    1 metadata ObjectMeta, 2 target? ObjectReference
apps.v1.Deployment
    1 metadata ObjectMeta, 2 spec DeploymentSpec, 3 status DeploymentStatus
apps.v1.DeploymentSpec
    1 replicas? int32, 2 selector? LabelSelector, 3 template? PodTemplateSpec,
    4 strategy DeploymentStrategy, 5 minReadySeconds int32, 6 revisionHistoryLimit? int32,
    7 paused bool, 9 progressDeadlineSeconds? int32
core.v1.PodTemplateSpec
    1 metadata ObjectMeta, 2 spec PodSpec
apps.v1.DeploymentStrategy
    1 type string, 2 rollingUpdate? RollingUpdateDeployment
apps.v1.RollingUpdateDeployment
    1 maxUnavailable? IntOrString, 2 maxSurge? IntOrString
apps.v1.DeploymentStatus
    1 observedGeneration int64, 2 replicas int32, 3 updatedReplicas int32,
    4 availableReplicas int32, 5 unavailableReplicas int32, 6 conditions [DeploymentCondition],
    7 readyReplicas int32, 8 collisionCount? int32
apps.v1.DeploymentCondition
    1 type? string, 2 status? string, 4 reason string, 5 message string, 6 lastUpdateTime Time,
    7 lastTransitionTime Time
apps.v1.ReplicaSet
    1 metadata ObjectMeta, 2 spec ReplicaSetSpec, 3 status ReplicaSetStatus
apps.v1.ReplicaSetSpec
    1 replicas? int32, 2 selector? LabelSelector, 3 template PodTemplateSpec,
    4 minReadySeconds int32
apps.v1.ReplicaSetStatus
    1 replicas? int32, 2 fullyLabeledReplicas int32, 3 observedGeneration int64,
    4 readyReplicas int32, 5 availableReplicas int32, 6 conditions [ReplicaSetCondition]
apps.v1.ReplicaSetCondition
    1 type? string, 2 status? string, 3 lastTransitionTime Time, 4 reason string,
    5 message string
coordination.v1.Lease
    1 metadata ObjectMeta, 2 spec LeaseSpec
coordination.v1.LeaseSpec
    1 holderIdentity? string, 2 leaseDurationSeconds? int32, 3 acquireTime? MicroTime,
    4 renewTime? MicroTime, 5 leaseTransitions? int32, 6 strategy? string,
    7 preferredHolder? string
policy.v1.Eviction
    1 metadata ObjectMeta, 2 deleteOptions? DeleteOptions
meta.v1.DeleteOptions
    1 gracePeriodSeconds? int64, 2 preconditions? Preconditions, 3 orphanDependents? bool,
    4 propagationPolicy? string, 5 dryRun [string],
    6 ignoreStoreReadErrorWithClusterBreakingPotential? bool
meta.v1.Preconditions
    1 uid? string, 2 resourceVersion? string
autoscaling.v1.Scale
    1 metadata ObjectMeta, 2 spec ScaleSpec, 3 status ScaleStatus
autoscaling.v1.ScaleSpec
    1 replicas int32
autoscaling.v1.ScaleStatus
    1 replicas? int32, 2 selector string
meta.v1.Time
    1 seconds? int64, 2 nanos? int32
meta.v1.MicroTime
    1 seconds? int64, 2 nanos? int32
meta.v1.FieldsV1
    1 Raw? bytes
resource.Quantity
    1 string? string
intstr.IntOrString
    1 type? int64, 2 intVal? int32, 3 strVal? string
"""

_FIELD = re.compile(r"(\d+) (?:\^(\w+)|(\w+)(\??) (\[\w+\]|\{\w+\}|\w+))")


def parse_table(text: str) -> dict[str, Message]:
    """The messages of a table written as above, references resolved to qualified names.
    A malformed line or an unknown type raises ValueError (at import: a typo in the table
    must not wait for a request to show)."""
    raw: dict[str, list[tuple[int, str, str, bool]]] = {}  # name -> (number, json, type, keep)
    current: list[tuple[int, str, str, bool]] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = raw.setdefault(line.strip(), [])
            continue
        if current is None:
            raise ValueError(f"protobuf schema: fields before any message: {line!r}")
        for item in filter(None, (part.strip() for part in line.split(","))):
            found = _FIELD.fullmatch(item)
            if found is None:
                raise ValueError(f"protobuf schema: cannot read field {item!r}")
            number, inline_type, json_name, keep, type_ = found.groups()
            current.append((int(number), json_name or "", inline_type or type_, keep == "?"))
    by_short_name: dict[str, str] = {}
    for name in raw:
        short = name.rsplit(".", 1)[1]
        if short in by_short_name:
            raise ValueError(f"protobuf schema: two messages named {short}")
        by_short_name[short] = name

    def resolve(type_: str, where: str) -> str:
        if type_ in SCALARS:
            return type_
        if type_ not in by_short_name:
            raise ValueError(f"protobuf schema: {where} refers to unknown type {type_}")
        return by_short_name[type_]

    messages: dict[str, Message] = {}
    for name, items in raw.items():
        fields: dict[int, Field] = {}
        for number, json_name, type_, keep in items:
            repeated, map_values = type_.startswith("["), type_.startswith("{")
            element = type_.strip("[]{}")
            if number in fields:
                raise ValueError(f"protobuf schema: {name} has field {number} twice")
            fields[number] = Field(
                number, json_name, resolve(element, f"{name} field {number}"),
                repeated=repeated, map_values=map_values, keep_zero=keep,
            )  # fmt: skip
            if not json_name and not fields[number].is_message:
                raise ValueError(f"protobuf schema: inline field {name}.{number} is no message")
        messages[name] = Message(name, fields)
    return messages


MESSAGES: dict[str, Message] = parse_table(_TABLE)

# The groups' DeleteOptions are one message: a client encodes it under the group
# version it talks to (meta.k8s.io/v1 when it has no group of its own).
_DELETE_OPTIONS_VERSIONS = (
    "v1", "apps/v1", "coordination.k8s.io/v1", "policy/v1", "autoscaling/v1", "meta.k8s.io/v1",
)  # fmt: skip

# (apiVersion, kind) of a body -> its message.
ROOTS: dict[tuple[str, str], Message] = {
    **{
        ("v1", kind): MESSAGES[f"core.v1.{kind}"]
        for kind in (
            "Namespace", "ConfigMap", "Secret", "Service", "ServiceAccount", "Pod",
            "Endpoints", "Event", "Node", "Binding",
        )
    },
    ("apps/v1", "Deployment"): MESSAGES["apps.v1.Deployment"],
    ("apps/v1", "ReplicaSet"): MESSAGES["apps.v1.ReplicaSet"],
    ("coordination.k8s.io/v1", "Lease"): MESSAGES["coordination.v1.Lease"],
    ("policy/v1", "Eviction"): MESSAGES["policy.v1.Eviction"],
    ("autoscaling/v1", "Scale"): MESSAGES["autoscaling.v1.Scale"],
    **{(version, "DeleteOptions"): MESSAGES["meta.v1.DeleteOptions"]
       for version in _DELETE_OPTIONS_VERSIONS},
}  # fmt: skip
