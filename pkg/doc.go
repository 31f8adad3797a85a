// Package pkg is the root of GoChat's shared library module. Its packages are
// imported by the services and import none of them.
package pkg
