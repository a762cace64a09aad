/**
 * Instances: the spec, its checks, QEMU feature probing, the typed runtime and the argv.
 * @packageDocumentation
 */
export {
  chooseAccelerator,
  type InterfaceAddress,
  type LaunchContext,
  MAX_SOCKET_PATH_BYTES,
  NODE_HV_PARAMS,
  type NodeHvParamName,
  renderArgv,
} from './argv.js';
export { checkInstanceSpec, INSTANCE_NAME_PATTERN, isUnicastMac, MIN_INSTANCE_MEMORY_MIB } from './check.js';
export {
  clearQemuFeaturesCache,
  describeQemu,
  featuresFromProbe,
  hasDevice,
  hasOption,
  type ProbeOptions,
  probeQemuFeatures,
  type QemuFeatures,
  type QemuMachineType,
  QemuProbeError,
  type QemuProbeReplies,
  recordQemuProbe,
} from './features.js';
export { PROBED_ACCELERATORS, PROBED_DEVICES, parseMachineHelp } from './features-parse.js';
export {
  DEFAULT_HOTPLUG_TIMEOUT_MS,
  DEFAULT_UNPLUG_TIMEOUT_MS,
  type HotDelOptions,
  type HotplugGuard,
  type HotplugOptions,
  type NicChanges,
  parseDeviceProperties,
  parsePeripheralIds,
  parseQueryCommands,
} from './hotplug.js';
export {
  allocateBus,
  backendRemoveCommand,
  busArguments,
  diskAddCommands,
  findDevice,
  HOTPLUG_ACTIONS,
  HOTPLUG_COMMANDS,
  HOTPLUG_TARGETS,
  HOTPLUGGABLE_DISK_TYPES,
  HOTPLUGGABLE_NIC_TYPES,
  type HotplugAction,
  HotplugError,
  type HotplugQemuFacts,
  type HotplugTarget,
  hotplugDisk,
  hotplugModel,
  hotplugNic,
  hotplugRefusals,
  newDeviceProblems,
  nicAddCommands,
  occupiedSlots,
  type QmpCommand,
} from './hotplug-model.js';
export { HV_PARAM_EFFECTS, type HvParamEffect } from './hvparam-effects.js';
export {
  DEFAULT_INSTANCE_RUN_DIR,
  type InstancePaths,
  instancePaths,
  type RunLayout,
  runLayout,
} from './layout.js';
export {
  FAMILY_PCI_BUS,
  type MachineFamily,
  machineFamily,
  pcMachineSuggestions,
} from './machine-types.js';
export {
  type DeviceBus,
  deviceId,
  type InstanceRuntime,
  InstanceRuntimeSchema,
  type PostStartActions,
  parseRuntime,
  postStartActions,
  RUNTIME_FORMAT_VERSION,
  type RuntimeCdrom,
  type RuntimeDisk,
  type RuntimeDisplay,
  RuntimeFormatError,
  type RuntimeNic,
  resolveRuntime,
  serializeRuntime,
  type VncBind,
} from './runtime.js';
export {
  type InstanceDisk,
  InstanceDiskSchema,
  type InstanceNic,
  type InstanceNicNetwork,
  InstanceNicNetworkSchema,
  InstanceNicSchema,
  type InstanceSpec,
  InstanceSpecSchema,
} from './spec.js';
