// How a TaskManager that cannot start exits: configuration errors apart, since no restart fixes them.
import { z } from "zod";
import {
  ConfigurationError,
  EXIT_CONFIGURATION_ERROR,
  exitFor,
  readEnvironment,
} from "../../../src/taskmanager/config/environment.js";
import { parseJobArgs } from "../../../src/taskmanager/job/builtin/job-args.js";

const thrown = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
};

test("an unusable environment, start-up configuration or job argument is a configuration error", () => {
  const missing = thrown(() => readEnvironment({}));
  expect(missing).toBeInstanceOf(ConfigurationError);
  expect((missing as Error).message).toContain("STREAMJOB_TASKMANAGER_CONFIG");
  const env = {
    STREAMJOB_TASKMANAGER_CONFIG: "{",
    STREAMJOB_TOKEN: "t",
    STREAMJOB_S3_ACCESS_KEY: "a",
    STREAMJOB_S3_SECRET_KEY: "s",
    POD_IP: "10.0.0.7",
  };
  expect(thrown(() => readEnvironment(env))).toBeInstanceOf(ConfigurationError);
  expect(thrown(() => readEnvironment({ ...env, STREAMJOB_TASKMANAGER_CONFIG: "{}" }))).toBeInstanceOf(
    ConfigurationError,
  );
  const badArgs = thrown(() => parseJobArgs("sequence", ["--keys", "many"], { keys: z.coerce.number() }));
  expect(badArgs).toBeInstanceOf(ConfigurationError);
  expect(thrown(() => parseJobArgs("sequence", ["--keys"], {}))).toBeInstanceOf(ConfigurationError);
});

test("a configuration error exits 78 and says so; any other failure exits 1 with its message", () => {
  expect(EXIT_CONFIGURATION_ERROR).toBe(78);
  expect(exitFor(new ConfigurationError('job.name "nope": not a built-in job'))).toEqual({
    exitCode: 78,
    message: 'configuration error: job.name "nope": not a built-in job',
  });
  expect(exitFor(new Error("restore: manifest not found"))).toEqual({
    exitCode: 1,
    message: "restore: manifest not found",
  });
  expect(exitFor("odd")).toEqual({ exitCode: 1, message: "odd" });
});
