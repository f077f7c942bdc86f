// A container's environment, resolved as the kubelet does: envFrom first, then env in order,
// with `$(VAR)` references expanded against what came before.
import type { V1Container, V1Pod } from "@kubernetes/client-node";

export interface EnvSources {
  /** Secret data, already base64-decoded; undefined when the Secret does not exist. */
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
}

/** Raised when a referenced Secret or ConfigMap (or key) is missing: the kubelet reports CreateContainerConfigError. */
export class ContainerConfigError extends Error {}

function fieldValue(pod: V1Pod, podIP: string, fieldPath: string): string {
  const meta = pod.metadata ?? {};
  const label = fieldPath.match(/^metadata\.labels\['(.+)'\]$/);
  if (label?.[1]) return meta.labels?.[label[1]] ?? "";
  const annotation = fieldPath.match(/^metadata\.annotations\['(.+)'\]$/);
  if (annotation?.[1]) return meta.annotations?.[annotation[1]] ?? "";
  switch (fieldPath) {
    case "metadata.name":
      return meta.name ?? "";
    case "metadata.namespace":
      return meta.namespace ?? "";
    case "metadata.uid":
      return meta.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.podIP":
      return podIP;
    case "status.podIPs":
      return podIP;
    case "status.hostIP":
    case "status.hostIPs":
      return "127.0.0.1";
    default:
      throw new ContainerConfigError(`unsupported fieldRef ${fieldPath}`);
  }
}

// $(VAR) expands to an earlier variable, $$(VAR) escapes to a literal $(VAR), unknown refs stay as written.
export function expandReferences(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === "$$") return "$";
    return name !== undefined && name in env ? env[name]! : match;
  });
}

export async function resolveEnv(
  pod: V1Pod,
  container: V1Container,
  podIP: string,
  sources: EnvSources,
): Promise<Record<string, string>> {
  const namespace = pod.metadata?.namespace ?? "default";
  const env: Record<string, string> = {};

  for (const from of container.envFrom ?? []) {
    const ref = from.secretRef ?? from.configMapRef;
    if (!ref?.name) continue;
    const kind = from.secretRef ? "secret" : "configmap";
    const data = from.secretRef
      ? await sources.secret(namespace, ref.name)
      : await sources.configMap(namespace, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new ContainerConfigError(`${kind} "${ref.name}" not found`);
    }
    for (const [key, value] of Object.entries(data)) env[`${from.prefix ?? ""}${key}`] = value;
  }

  for (const variable of container.env ?? []) {
    if (variable.valueFrom === undefined) {
      env[variable.name] = expandReferences(variable.value ?? "", env);
      continue;
    }
    const { fieldRef, secretKeyRef, configMapKeyRef, resourceFieldRef } = variable.valueFrom;
    if (fieldRef) {
      env[variable.name] = fieldValue(pod, podIP, fieldRef.fieldPath);
    } else if (secretKeyRef || configMapKeyRef) {
      const ref = (secretKeyRef ?? configMapKeyRef)!;
      const kind = secretKeyRef ? "secret" : "configmap";
      const data = secretKeyRef
        ? await sources.secret(namespace, ref.name ?? "")
        : await sources.configMap(namespace, ref.name ?? "");
      const value = data?.[ref.key];
      if (value === undefined) {
        if (ref.optional) continue;
        throw new ContainerConfigError(
          data
            ? `couldn't find key ${ref.key} in ${kind} ${namespace}/${ref.name}`
            : `${kind} "${ref.name}" not found`,
        );
      }
      env[variable.name] = value;
    } else if (resourceFieldRef) {
      // Resource values are informational here: processes are not confined to them.
      const resources = container.resources ?? {};
      const [kind, resource] = resourceFieldRef.resource.split(".") as ["limits" | "requests", string];
      env[variable.name] = String(resources[kind]?.[resource] ?? "0");
    }
  }
  return env;
}
