// notif_svc's own MongoDB user: readWrite on its database and nothing else, so the root account stays
// with the operator. The mongo image runs /docker-entrypoint-initdb.d/*.js with mongosh once, on an
// empty data volume, when MONGO_INITDB_ROOT_USERNAME/PASSWORD are set (which turns authentication on).
// Re-running it (mongosh as root) resets the user's password and roles.
//
//   TASKSWARM_MONGO_DATABASE   the database (MONGO_DATABASE of notif_svc; default taskswarm_notif)
//   TASKSWARM_MONGO_USER       the user (default notif_svc); it is defined in that database, so the
//                              service's MONGO_URL names it as its path: mongodb://user:pw@host/database
//   NOTIF_SVC_MONGO_PASSWORD   its password
const databaseName = process.env.TASKSWARM_MONGO_DATABASE || "taskswarm_notif";
const userName = process.env.TASKSWARM_MONGO_USER || "notif_svc";
const password = process.env.NOTIF_SVC_MONGO_PASSWORD;
if (!password) {
  throw new Error("taskswarm: NOTIF_SVC_MONGO_PASSWORD is not set");
}

const target = db.getSiblingDB(databaseName);
const roles = [{ role: "readWrite", db: databaseName }];
if (target.getUser(userName) === null) {
  target.createUser({ user: userName, pwd: password, roles: roles });
  print(`taskswarm: created MongoDB user ${userName} on ${databaseName}`);
} else {
  target.updateUser(userName, { pwd: password, roles: roles });
  print(`taskswarm: updated MongoDB user ${userName} on ${databaseName}`);
}
