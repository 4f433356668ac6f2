// Package cli gives the three commands one command line over pkg/config:
// the configuration flags each command takes (same names, short forms and
// defaults everywhere), -c/--config, --print-config and --version, and
// --help that reads like a man page, with flags grouped under headings.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lightshark-dev/lightshark-mini/pkg/config"
	"github.com/lightshark-dev/lightshark-mini/pkg/version"
)

// groupAnnotation is the flag annotation naming a flag's --help heading.
const groupAnnotation = "lightshark_group"

// GroupGeneral heads the flags of -c, --print-config, --version, --help.
const GroupGeneral = "General"

// Bind adds the configuration flags of which to cmd, with -c/--config,
// --print-config and --version, and sets cmd's RunE: it loads the
// configuration (flags > LIGHTSHARK_* > file > defaults), prints it for
// --print-config, and otherwise calls run. Flags the command defines itself
// (set them before or after Bind) are grouped with SetGroup.
func Bind(cmd *cobra.Command, which config.Command, run func(ctx context.Context, cfg *config.Config) error) {
	given := map[string][]string{}
	f := cmd.Flags()
	f.SortFlags = false
	for _, fld := range config.Fields(which) {
		if fld.Flag == "" {
			continue
		}
		v := &value{fld: fld, given: given}
		fl := f.VarPF(v, fld.Flag, fld.Short, fld.Usage)
		fl.DefValue = fld.Default()
		if fld.Kind == config.Bool {
			fl.NoOptDefVal = "true"
		}
		SetGroup(f, fld.Flag, fld.Group)
	}
	var file string
	var printConfig, showVersion bool
	f.StringVarP(&file, "config", "c", "", "YAML configuration file (also LIGHTSHARK_CONFIG)")
	f.BoolVar(&printConfig, "print-config", false, "print the effective configuration, secrets redacted, and exit")
	f.BoolVar(&showVersion, "version", false, "print version, commit and Go version, and exit")
	cmd.InitDefaultHelpFlag()
	for _, n := range []string{"config", "print-config", "version", "help"} {
		SetGroup(f, n, GroupGeneral)
	}
	cmd.Args = cobra.NoArgs
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	cmd.SetUsageFunc(usage)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if showVersion {
			fmt.Fprintln(cmd.OutOrStdout(), version.String(cmd.Name()))
			return nil
		}
		if file == "" {
			file = os.Getenv("LIGHTSHARK_CONFIG")
		}
		cfg, err := config.Load(which, config.Sources{File: file, LookupEnv: os.LookupEnv, Flags: given})
		if err != nil {
			return err
		}
		if printConfig {
			return cfg.Print(cmd.OutOrStdout(), which)
		}
		return run(cmd.Context(), cfg)
	}
}

// PrintError writes err for a user: one line per error (a configuration
// may have several), each prefixed with the program's name.
func PrintError(w io.Writer, program string, err error) {
	for _, line := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(w, "%s: %s\n", program, line)
	}
}

// SetGroup puts the flag under a heading in --help.
func SetGroup(f *pflag.FlagSet, name, group string) {
	if err := f.SetAnnotation(name, groupAnnotation, []string{group}); err != nil {
		panic(err) // a programming error: the flag does not exist
	}
}

// Alias adds a hidden flag that sets the configuration flag target (an
// older or shorter name kept working).
func Alias(cmd *cobra.Command, alias, target string) {
	fl := cmd.Flags().Lookup(target)
	if fl == nil {
		panic("cli: no flag " + target)
	}
	a := cmd.Flags().VarPF(fl.Value, alias, "", "same as --"+target)
	a.Hidden = true
	a.NoOptDefVal = fl.NoOptDefVal
}

// value records what the user typed for a configuration flag; config.Load
// parses and checks it in order of precedence.
type value struct {
	fld   *config.Field
	given map[string][]string
}

func (v *value) String() string { return v.fld.Default() }

func (v *value) Set(s string) error {
	v.given[v.fld.Flag] = append(v.given[v.fld.Flag], s)
	return nil
}

func (v *value) Type() string {
	switch v.fld.Kind {
	case config.Int:
		return "int"
	case config.Bool:
		return "bool"
	case config.Size:
		return "size"
	case config.Duration:
		return "duration"
	case config.Mode:
		return "mode"
	case config.List:
		return "list"
	case config.IntList:
		return "ints"
	}
	return "string"
}

// usage prints the synopsis, the flags under their headings in the order
// they were defined, the precedence rule and the examples.
func usage(cmd *cobra.Command) error {
	w := cmd.OutOrStderr()
	fmt.Fprintf(w, "Usage:\n  %s\n", cmd.UseLine())
	var order []string
	groups := map[string]*pflag.FlagSet{}
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		g := GroupGeneral
		if a := fl.Annotations[groupAnnotation]; len(a) > 0 {
			g = a[0]
		}
		if groups[g] == nil {
			groups[g] = pflag.NewFlagSet(g, pflag.ContinueOnError)
			groups[g].SortFlags = false
			order = append(order, g)
		}
		groups[g].AddFlag(fl)
	})
	// The general flags (-c, --version, --help) come last.
	for i, g := range order {
		if g == GroupGeneral {
			order = append(append(order[:i:i], order[i+1:]...), g)
			break
		}
	}
	for _, g := range order {
		fmt.Fprintf(w, "\n%s:\n%s", g, groups[g].FlagUsagesWrapped(100))
	}
	if cmd.Flags().Lookup("config") != nil {
		io.WriteString(w, precedence)
	}
	if cmd.HasExample() {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(cmd.Example, "\n"))
	}
	return nil
}

const precedence = `
Configuration:
  Every flag can also be set in the environment as LIGHTSHARK_<FLAG>
  (LIGHTSHARK_DB_PATH=/data/traffic.db) or in the -c YAML file under its key
  (db_path: /data/traffic.db; the original tool's keys data_retention_seconds and
  aggregation_window_seconds for --data-retention and --aggregation-window).
  Flags win over the environment, which wins over the file. --print-config
  shows the result and where each value came from.
`
