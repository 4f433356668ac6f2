package testenv

// sysSetns is setns(2) on linux/amd64, which package syscall's frozen table
// lacks.
const sysSetns = 308
