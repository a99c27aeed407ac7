/**
 * Prometheus metrics for every HTTP route, in the text exposition format (prometheus.io
 * "Exposition formats"), with no client library: a counter and a latency histogram keyed by
 * method, route pattern (not the raw URL, so cardinality stays bounded) and status.
 *
 *   okeanos_http_requests_total{method,route,status}
 *   okeanos_http_request_duration_seconds_bucket{method,route,le}  (+ _sum, _count)
 *
 * plus whatever collectors add: `okeanos serve` adds the NBD server's per-volume I/O
 * (volumeIoMetrics below).
 */
import type { FastifyInstance } from "fastify";
import type { VolumeIoCounters } from "../engine/volume.ts";

/** Seconds. Token logins cost ~50 ms of scrypt; block reads a few ms; uploads seconds. */
export const latencyBucketsSeconds = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

interface Histogram {
  buckets: number[];
  sum: number;
  count: number;
}

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A source of more metric lines, asked on every scrape. */
export type MetricsCollector = () => Promise<string> | string;

export class HttpMetrics {
  readonly #collectors: MetricsCollector[] = [];
  readonly #requests = new Map<string, number>();
  readonly #latency = new Map<string, Histogram>();

  observe(method: string, route: string, status: number, seconds: number): void {
    const requestKey = `method="${label(method)}",route="${label(route)}",status="${status}"`;
    this.#requests.set(requestKey, (this.#requests.get(requestKey) ?? 0) + 1);
    const latencyKey = `method="${label(method)}",route="${label(route)}"`;
    let histogram = this.#latency.get(latencyKey);
    if (histogram === undefined) {
      histogram = { buckets: latencyBucketsSeconds.map(() => 0), sum: 0, count: 0 };
      this.#latency.set(latencyKey, histogram);
    }
    latencyBucketsSeconds.forEach((bound, index) => {
      if (seconds <= bound) histogram.buckets[index]! += 1;
    });
    histogram.sum += seconds;
    histogram.count += 1;
  }

  render(): string {
    const lines = ["# HELP okeanos_http_requests_total HTTP requests answered.", "# TYPE okeanos_http_requests_total counter"];
    for (const [key, count] of this.#requests) lines.push(`okeanos_http_requests_total{${key}} ${count}`);
    lines.push("# HELP okeanos_http_request_duration_seconds Time to answer an HTTP request.");
    lines.push("# TYPE okeanos_http_request_duration_seconds histogram");
    for (const [key, histogram] of this.#latency) {
      latencyBucketsSeconds.forEach((bound, index) => {
        lines.push(`okeanos_http_request_duration_seconds_bucket{${key},le="${bound}"} ${histogram.buckets[index]}`);
      });
      lines.push(`okeanos_http_request_duration_seconds_bucket{${key},le="+Inf"} ${histogram.count}`);
      lines.push(`okeanos_http_request_duration_seconds_sum{${key}} ${histogram.sum}`);
      lines.push(`okeanos_http_request_duration_seconds_count{${key}} ${histogram.count}`);
    }
    return `${lines.join("\n")}\n`;
  }

  addCollector(collector: MetricsCollector): void {
    this.#collectors.push(collector);
  }

  /** Observes every response of `app` and serves GET /metrics. */
  install(app: FastifyInstance): void {
    app.addHook("onResponse", async (request, reply) => {
      this.observe(request.method, request.routeOptions.url ?? "(unmatched)", reply.statusCode, reply.elapsedTime / 1000);
    });
    app.get("/metrics", async (_request, reply) => {
      const more = await Promise.all(this.#collectors.map(async (collect) => collect()));
      return reply.type("text/plain; version=0.0.4").send(this.render() + more.join(""));
    });
  }
}

/** Prometheus counters per volume from the NBD server's I/O counters. */
export function volumeIoMetrics(counters: ReadonlyMap<string, VolumeIoCounters>): string {
  const families: Array<[string, string, (io: VolumeIoCounters) => number]> = [
    ["okeanos_volume_read_requests_total", "NBD reads completed.", (io) => io.reads],
    ["okeanos_volume_read_bytes_total", "Bytes read over NBD.", (io) => io.readBytes],
    ["okeanos_volume_write_requests_total", "NBD writes completed.", (io) => io.writes],
    ["okeanos_volume_write_bytes_total", "Bytes written over NBD.", (io) => io.writeBytes],
    ["okeanos_volume_zero_requests_total", "NBD write-zeroes and trims completed.", (io) => io.zeroes],
    ["okeanos_volume_zero_bytes_total", "Bytes zeroed or trimmed over NBD.", (io) => io.zeroBytes],
    ["okeanos_volume_flushes_total", "NBD flushes completed (each made every earlier write durable).", (io) => io.flushes],
  ];
  const lines: string[] = [];
  for (const [name, help, value] of families) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (const [volume, io] of counters) lines.push(`${name}{volume="${label(volume)}"} ${value(io)}`);
  }
  return `${lines.join("\n")}\n`;
}
