/** A numbered or named list of submodules (torch.nn.ModuleList): indices become state-dict names. */
import { Module } from "./module.ts";

export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  /** Registers `m` under `name` (default: its index). */
  add<T extends M>(m: T, name = String(this.items.length)): T {
    this.child(name, m);
    this.items.push(m);
    return m;
  }
}
