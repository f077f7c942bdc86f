// Pod volumes, materialised as folders under the pod's directory and bind-mounted into each
// container's private mount namespace: emptyDir, secret, configMap, downwardAPI, hostPath and
// projected (the ServiceAccount token volume the admission plugin adds to every pod).
import type { V1Container, V1Pod, V1Volume, V1VolumeProjection } from "@kubernetes/client-node";
import { chownSync, mkdirSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../files.js";
import { ContainerConfigError } from "./env.js";

export interface VolumeSources {
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  serviceAccountToken(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
  caCert(): string;
}

export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
  /** A single file (the termination message file) rather than a folder. */
  file?: boolean;
}

/** The earliest time, in ms from now, at which some projected token should be renewed (80% of its life). */
export type TokenRefresh = number | undefined;

export class PodVolumes {
  private readonly namespace: string;
  constructor(
    private readonly pod: V1Pod,
    private readonly root: string,
    private readonly sources: VolumeSources,
    private readonly owner: { uid: number; gid: number } | undefined,
  ) {
    this.namespace = pod.metadata?.namespace ?? "default";
  }

  private dirOf(volume: V1Volume): string {
    return volume.hostPath ? volume.hostPath.path : path.join(this.root, volume.name);
  }

  /** Writes every volume's files; returns when projected tokens should be refreshed. */
  async materialize(): Promise<TokenRefresh> {
    let refreshInMs: number | undefined;
    for (const volume of this.pod.spec?.volumes ?? []) {
      const dir = this.dirOf(volume);
      if (volume.hostPath) continue;
      mkdirSync(dir, { recursive: true });
      const files: Record<string, string> = {};
      if (volume.secret) {
        Object.assign(
          files,
          await this.keyed(
            "secret",
            volume.secret.secretName ?? "",
            volume.secret.items,
            volume.secret.optional,
          ),
        );
      } else if (volume.configMap) {
        Object.assign(
          files,
          await this.keyed(
            "configmap",
            volume.configMap.name ?? "",
            volume.configMap.items,
            volume.configMap.optional,
          ),
        );
      } else if (volume.downwardAPI) {
        Object.assign(files, this.downward(volume.downwardAPI.items ?? []));
      } else if (volume.projected) {
        for (const source of volume.projected.sources ?? []) {
          const { files: projected, refreshInMs: refresh } = await this.projection(source);
          Object.assign(files, projected);
          if (refresh !== undefined) refreshInMs = Math.min(refreshInMs ?? Infinity, refresh);
        }
      }
      for (const [name, content] of Object.entries(files)) writeFileAtomic(path.join(dir, name), content);
      if (this.owner && volume.emptyDir) chownSync(dir, this.owner.uid, this.owner.gid);
    }
    return refreshInMs;
  }

  mounts(container: V1Container): Mount[] {
    const volumes = new Map((this.pod.spec?.volumes ?? []).map((v) => [v.name, v]));
    return (container.volumeMounts ?? []).map((m) => {
      const volume = volumes.get(m.name);
      if (!volume) throw new ContainerConfigError(`volume "${m.name}" is not defined in the pod`);
      const source = m.subPath ? path.join(this.dirOf(volume), m.subPath) : this.dirOf(volume);
      return { source, target: m.mountPath, readOnly: m.readOnly ?? false };
    });
  }

  private async keyed(
    kind: "secret" | "configmap",
    name: string,
    items: { key: string; path: string }[] | undefined,
    optional: boolean | undefined,
  ): Promise<Record<string, string>> {
    const data =
      kind === "secret"
        ? await this.sources.secret(this.namespace, name)
        : await this.sources.configMap(this.namespace, name);
    if (!data) {
      if (optional) return {};
      throw new ContainerConfigError(`${kind} "${name}" not found`);
    }
    if (!items?.length) return data;
    const files: Record<string, string> = {};
    for (const item of items) {
      const value = data[item.key];
      if (value === undefined)
        throw new ContainerConfigError(`couldn't find key ${item.key} in ${kind} ${this.namespace}/${name}`);
      files[item.path] = value;
    }
    return files;
  }

  private downward(items: { path: string; fieldRef?: { fieldPath: string } }[]): Record<string, string> {
    const meta = this.pod.metadata ?? {};
    const files: Record<string, string> = {};
    for (const item of items) {
      const field = item.fieldRef?.fieldPath;
      if (field === "metadata.namespace") files[item.path] = meta.namespace ?? "";
      else if (field === "metadata.name") files[item.path] = meta.name ?? "";
      else if (field === "metadata.uid") files[item.path] = meta.uid ?? "";
      else if (field === "metadata.labels")
        files[item.path] = Object.entries(meta.labels ?? {})
          .map(([k, v]) => `${k}="${v}"`)
          .join("\n");
      else if (field === "metadata.annotations")
        files[item.path] = Object.entries(meta.annotations ?? {})
          .map(([k, v]) => `${k}="${v}"`)
          .join("\n");
    }
    return files;
  }

  private async projection(
    source: V1VolumeProjection,
  ): Promise<{ files: Record<string, string>; refreshInMs?: number }> {
    if (source.serviceAccountToken) {
      const { path: file, audience, expirationSeconds = 3600 } = source.serviceAccountToken;
      const token = await this.sources.serviceAccountToken(this.pod, audience, expirationSeconds);
      return { files: { [file]: token }, refreshInMs: expirationSeconds * 800 };
    }
    if (source.configMap) {
      const name = source.configMap.name ?? "";
      // kube-root-ca.crt is published by kube-controller-manager; serve our CA even before it exists.
      if (name === "kube-root-ca.crt") {
        const data = (await this.sources.configMap(this.namespace, name)) ?? {
          "ca.crt": this.sources.caCert(),
        };
        return {
          files: Object.fromEntries(
            (source.configMap.items ?? [{ key: "ca.crt", path: "ca.crt" }]).map((i) => [
              i.path,
              data[i.key] ?? "",
            ]),
          ),
        };
      }
      return {
        files: await this.keyed("configmap", name, source.configMap.items, source.configMap.optional),
      };
    }
    if (source.secret) {
      return {
        files: await this.keyed(
          "secret",
          source.secret.name ?? "",
          source.secret.items,
          source.secret.optional,
        ),
      };
    }
    if (source.downwardAPI) return { files: this.downward(source.downwardAPI.items ?? []) };
    return { files: {} };
  }
}
